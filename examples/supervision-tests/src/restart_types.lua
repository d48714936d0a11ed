local test = require("test")
local supervisor = require("supervisor")

local function state(tree, id)
  for _, c in ipairs(supervisor.which_children(tree)) do
    if c.id == id then return c.state end
  end
  return "gone"
end

return { run = function()
  return test.run_cases(function()
    describe("restart types", function()
      it("a transient child that ends normally stays down", function()
        local parser = test.child_pid("pipeline:pipeline", "parser")
        process.send(parser, "stop")
        test.wait_until(function() return state("pipeline:pipeline", "parser") == "undefined" end)
        test.eq(test.restarts("pipeline:pipeline"), 0)
      end)

      it("a transient child that fails is restarted", function()
        -- the case before left it down
        local parser = test.no_error(supervisor.restart_child("pipeline:pipeline", "parser"))
        test.exit(parser, "lost its input")
        test.wait_restart("pipeline:pipeline", "parser", parser)
        local log = test.tree_log("pipeline:pipeline")
        local exit
        for _, e in ipairs(log) do if e.event == "exit" then exit = e end end
        test.eq(exit.reason, "lost its input")
      end)

      it("a permanent child is restarted", function()
        local w = test.child_pid("pipeline:sink", "writer1")
        test.kill(w)
        test.wait_restart("pipeline:sink", "writer1", w)
      end)

      it("a temporary child is not restarted and is forgotten", function()
        local w = test.child_pid("pipeline:sink", "writer2")
        process.send(w, "crash")
        test.wait_until(function() return state("pipeline:sink", "writer2") == "gone" end)
        test.eq(test.restarts("pipeline:sink", "writer2"), 0)
      end)
    end)
  end)
end }
