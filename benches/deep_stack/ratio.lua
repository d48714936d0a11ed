-- The same loop timed (CPU seconds, os.clock) at depth 0 and at the bottom of DEPTH frames,
-- best of five each; every frame allocates a table, so frame records lie apart in memory.
local function loop(n)
  local s = 0
  for i = 1, n do s = s + (i % 7) end
  return s
end
local function timed(n)
  local t = os.clock()
  loop(n)
  return os.clock() - t
end
local function down(d, n)
  if d == 0 then return timed(n) end
  local keep = { d }
  return (down(d - 1, n))
end
local function main(depth, n)
  depth, n = tonumber(depth) or 190000, tonumber(n) or 20000000
  local top, deep = math.huge, math.huge
  for _ = 1, 5 do
    top = math.min(top, timed(n))
    deep = math.min(deep, down(depth, n))
  end
  return string.format("depth 0 %.3f s, depth %d %.3f s, ratio %.2f", top, depth, deep, deep / top)
end
if ... == "plain" then print(main(select(2, ...))) end
return { main = main }
