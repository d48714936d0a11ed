local io = require("io")
local funcs = require("funcs")
local time = require("time")

type Line = {item: string, qty: integer}

local function parse(args: {string}): ({Line}?, string?)
  local lines: {Line} = {}
  for i = 1, #args, 2 do
    -- a cast raises when the value does not convert (en/lua/types.md, "Safe Cast")
    local ok, qty = pcall(integer, args[i + 1])
    if not ok then
      return nil, "quantity of " .. tostring(args[i]) .. ": " .. tostring(qty)
    end
    table.insert(lines, {item = args[i], qty = qty})
  end
  return lines, nil
end

local function main(...: string): integer
  local started = time.now()
  local lines, err = parse({...})
  if not lines then
    io.eprint("error: " .. err)
    return 2
  end
  local total: integer = 0
  for _, line: Line in ipairs(lines) do
    local cents, perr = funcs.call("app:price", line)
    if perr then
      io.eprint(string.format("%s: %s (%s)", line.item, perr, perr:kind()))
      return 1
    end
    io.print(string.format("%-8s x%-3d %7.2f", line.item, line.qty, cents / 100))
    total = total + cents
  end
  io.print(string.format("%-13s %7.2f", "total", total / 100))
  io.eprint("priced in " .. tostring(time.since(started):round(time.MICROSECOND)))
  return 0
end

return {main = main}
