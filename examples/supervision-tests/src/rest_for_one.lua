local test = require("test")
local supervisor = require("supervisor")

local TREE = "pipeline:pipeline"

local function define()
  describe("pipeline (rest_for_one)", function()
    it("restarts the parser and what follows it when the parser crashes", function()
      local reader = test.child_pid(TREE, "reader")
      local parser = test.child_pid(TREE, "parser")
      process.send(parser, "crash")
      test.wait_restart(TREE, "parser", parser)
      test.eq(test.child_pid(TREE, "reader"), reader, "the reader is untouched")
      test.eq(test.events(TREE), { "parser exit", "sink stop", "parser restart", "sink restart" })
      -- the log from the runtime's start has the starts in declaration order first
      test.eq(test.events(TREE, { since_start = true }), {
        "reader start", "parser start", "sink start",
        "parser exit", "sink stop", "parser restart", "sink restart",
      })
      test.eq(test.restarts(TREE), 2)
    end)

    it("restarts all three when the reader crashes", function()
      local reader = test.child_pid(TREE, "reader")
      process.send(reader, "crash")
      test.wait_restart(TREE, "reader", reader)
      test.eq(test.restarts(TREE, "reader"), 1)
      test.eq(test.restarts(TREE, "parser"), 1)
      test.eq(test.restarts(TREE, "sink"), 1)
    end)
  end)
end

return { run = test.run_cases(define) }
