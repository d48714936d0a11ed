local logger = require("logger")

local function main(name)
  name = name or "world"
  local greeting = "Hello, " .. name .. "!"
  logger:info(greeting, {pid = process.pid()})
  return greeting
end

return { main = main }
