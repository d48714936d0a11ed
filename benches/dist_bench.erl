%% Erlang distribution on this machine, beside warden's cluster benchmark
%% (benches/cluster.rs): a send + reply round trip between two nodes, and one-way
%% sends from one process. Run by the benchmark: node b is started with
%% `erl -sname B -setcookie C -noshell -pa DIR`, then node a runs main([B]).
-module(dist_bench).
-export([main/1, echo/0, counter/2]).

echo() -> receive {From, X} -> From ! {self(), X}, echo() end.

counter(0, From) -> From ! done, ok;
counter(N, From) -> receive _ -> counter(N - 1, From) end.

wait_for(Node, 0) -> error({no_node, Node});
wait_for(Node, K) ->
    case net_adm:ping(Node) of
        pong -> ok;
        pang -> timer:sleep(100), wait_for(Node, K - 1)
    end.

rt(_, 0) -> ok;
rt(P, I) -> P ! {self(), I}, receive {P, I} -> rt(P, I - 1) end.

flood(_, 0) -> ok;
flood(P, I) -> P ! {m, I}, flood(P, I - 1).

main([NodeStr]) ->
    Node = list_to_atom(NodeStr),
    wait_for(Node, 100),
    E = spawn(Node, dist_bench, echo, []),
    N = 5000,
    M = 200000,
    rt(E, 1000),
    lists:foreach(
      fun(_) ->
          T0 = erlang:monotonic_time(nanosecond),
          rt(E, N),
          T1 = erlang:monotonic_time(nanosecond),
          C = spawn(Node, dist_bench, counter, [M, self()]),
          T2 = erlang:monotonic_time(nanosecond),
          flood(C, M),
          receive done -> ok end,
          T3 = erlang:monotonic_time(nanosecond),
          io:format("round ~.3f ~.1f~n", [(T1 - T0) / N / 1000, M / ((T3 - T2) / 1.0e9)])
      end, lists:seq(1, 7)),
    rpc:call(Node, init, stop, []).
