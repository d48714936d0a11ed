local test = require("test")
local supervisor = require("supervisor")

return { run = function()
  return test.run_cases(function()
    describe("a service's backoff", function()
      it("retries after 1 s, 2 s, 4 s, then gives up (a hundred times faster here)", function()
        supervisor.start("tests:flaky")
        test.wait_until(function()
          local i = supervisor.info("tests:flaky")
          return i.state == "Failed" and i.attempt == 4
        end, 2000)
      end)
    end)
  end)
end }
