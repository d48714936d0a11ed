local funcs = require("funcs")
local logger = require("logger")

local function main()
  local product = funcs.call("app:compute", 6, 7)

  local users = {
    { id = 1, name = "Alice", tags = { "admin" }, active = true },
    { id = 2, name = "Bob", tags = { "user" }, active = false },
  }
  local transformed, err = funcs.call("app:transform_users", users)
  assert(transformed, err)

  -- a WIT result<s32, error-info>: the error case comes back as `nil, err`
  local quotient = funcs.call("app:divide", 84, 2)
  local none, why = funcs.call("app:divide", 1, 0)

  logger:info("wasm results", { product = product, first = transformed[1].display })
  return { product = product, transformed = transformed, quotient = quotient, division_error = why }
end

return { main = main }
