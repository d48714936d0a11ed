local test = require("test")
return { run = test.run_cases(function()
  it("holds", function() test.eq(1 + 1, 2) end)
end) }
