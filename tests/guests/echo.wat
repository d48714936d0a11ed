;; A WebAssembly process (warden:process) that echoes `count` messages back to their
;; senders under the topic "echo", then returns count. Used by tests/wasm_process.rs and
;; benches/runtime.rs. receive(none) writes option<message> at 16: the tag at 16, then
;; topic (ptr, len) at 20/24, sender at 28/32, payload at 36/40.
(module
  (import "warden:host/process@0.1.0" "receive" (func $receive (param i32 i64 i32)))
  (import "warden:host/process@0.1.0" "send" (func $send (param i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
      (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (block $ok
      (br_if $ok (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (drop (memory.grow (i32.add (i32.const 1)
        (i32.div_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
                   (i32.const 65536))))))
    (local.get $p))
  (data (i32.const 8) "echo")
  (func (export "run") (param $count i32) (result i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (call $receive (i32.const 0) (i64.const 0) (i32.const 16))
        (br_if $done (i32.eqz (i32.load8_u (i32.const 16))))
        (call $send
          (i32.load (i32.const 28)) (i32.load (i32.const 32))
          (i32.const 8) (i32.const 4)
          (i32.load (i32.const 36)) (i32.load (i32.const 40))
          (i32.const 64))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $i)))
