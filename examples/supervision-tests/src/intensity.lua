local test = require("test")
local supervisor = require("supervisor")

return { run = function()
  return test.run_cases(function()
    describe("intensity", function()
      it("more than 3 restarts in 5 s fail the tree to its service, which restarts it", function()
        for _ = 1, 4 do
          local reader = test.child_pid("pipeline:pipeline", "reader")
          process.send(reader, "crash")
          test.wait_until(function()
            local p = test.child_pid("pipeline:pipeline", "reader")
            return p and p ~= reader
          end)
        end
        test.wait_until(function() return supervisor.info("pipeline:svc").restarts == 1 end)
        test.wait_state("pipeline:svc", "Running")
      end)
    end)
  end)
end }
