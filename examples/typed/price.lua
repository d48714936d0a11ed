local inventory = require("inventory")

type Line = {item: string, qty: integer}

local function main(line: Line): (integer?, error?)
  local item, why = inventory.find(line.item)
  if not item then
    return nil, errors.new({message = why, kind = errors.NOT_FOUND})
  end
  return item.cents * line.qty, nil
end

return {main = main}
