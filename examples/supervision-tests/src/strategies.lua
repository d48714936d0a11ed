local test = require("test")
local supervisor = require("supervisor")

local function one_for_all()
  return test.run_cases(function()
    describe("one_for_all", function()
      before_each(function() test.start("tests:all") end)
      after_each(function() test.stop("tests:all") end)

      it("restarts every child when one crashes", function()
        local b = test.child_pid("tests:all", "b")
        process.send(b, "crash")
        test.wait_restart("tests:all", "b", b)
        test.eq(test.events("tests:all"), {
          "a start", "b start", "c start",
          "b exit", "c stop", "a stop", "a restart", "b restart", "c restart",
        })
        test.eq(test.restarts("tests:all", "b"), 1)
      end)
    end)
  end)
end

local function simple_one_for_one()
  return test.run_cases(function()
    describe("simple_one_for_one", function()
      it("starts children from the template and restarts a failed one", function()
        test.start("tests:pool")
        test.eq(supervisor.count_children("tests:pool").specs, 0)
        local p1 = test.no_error(supervisor.start_child("tests:pool", { "one" }))
        local p2 = test.no_error(supervisor.start_child("tests:pool", { "two" }))
        test.eq(supervisor.count_children("tests:pool").active, 2)
        process.send(p1, "crash")
        test.wait_until(function()
          for _, c in ipairs(supervisor.which_children("tests:pool")) do
            if c.pid and c.pid ~= p1 and c.pid ~= p2 then return true end
          end
        end)
        test.eq(test.restarts("tests:pool"), 1)
        test.ok(supervisor.terminate_child("tests:pool", p2))
        test.eq(supervisor.count_children("tests:pool").specs, 1)
      end)
    end)
  end)
end

return { one_for_all = one_for_all, simple_one_for_one = simple_one_for_one }
