-- A typed library: record types, optional fields, generics with a constraint.
type Item = {
  name: string,
  cents: integer,
  note?: string,
}

local items: {[string]: Item} = {
  apple = {name = "apple", cents = 45},
  bread = {name = "bread", cents = 320, note = "baked today"},
}

local M = {}

function M.find(name: string): (Item?, string?)
  local item = items[name]
  if not item then
    return nil, "no item " .. name
  end
  return item, nil
end

function M.total<T: number>(values: {T}): T
  local sum = 0
  for _, v: T in ipairs(values) do
    sum = sum + v
  end
  return sum :: T
end

return M
