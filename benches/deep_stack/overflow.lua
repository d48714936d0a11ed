-- Unbounded recursion that is not a tail call: ends in "stack overflow".
local function f(n) return f(n + 1) + 1 end
if ... == "plain" then print(pcall(f, 1)) end
return { main = function() return f(1) end }
