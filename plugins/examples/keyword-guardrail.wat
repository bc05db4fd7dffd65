;; The example guardrail plugin (ABI v1, see plugins/README.md): refuses a
;; payload whose JSON contains "ignore previous instructions" (ASCII letters
;; compared without case), a crude prompt-injection tell; allows the rest.
;;
;; Rebuild the shipped binary with:
;;   cargo run -p convergio-plugins --example build_example_guardrail
;; (a test checks keyword-guardrail.wasm is this file compiled).
(module
  (memory (export "memory") 1)
  ;; Inputs are placed from 1024 up by a bump allocator; each call gets a
  ;; fresh instance, so nothing is ever freed.
  (global $next (mut i32) (i32.const 1024))

  ;; The two answers and the needle, at fixed offsets.
  (data (i32.const 0) "{\"verdict\":\"allow\"}")
  (data (i32.const 64) "{\"verdict\":\"deny\",\"reason\":\"PROMPT_INJECTION\",\"message\":\"the message asks the agent to ignore its instructions\"}")
  (data (i32.const 512) "ignore previous instructions")

  ;; alloc(len) -> ptr: bump allocation, growing memory as needed.
  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32)
    (local $end i32)
    (local $have i32)
    (local.set $ptr (global.get $next))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.lt_s
              (memory.grow
                (i32.add
                  (i32.shr_u (i32.sub (local.get $end) (local.get $have)) (i32.const 16))
                  (i32.const 1)))
              (i32.const 0))
          (then unreachable))))
    (global.set $next (local.get $end))
    (local.get $ptr))

  ;; guard(ptr, len) -> (answer_ptr << 32) | answer_len
  (func (export "guard") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32)
    (local $j i32)
    (local $last i32)
    ;; The needle is 28 bytes; no match is possible in a shorter input.
    (if (i32.lt_u (local.get $len) (i32.const 28))
      (then (return (i64.const 19))))
    (local.set $last (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 28)))
    (local.set $i (local.get $ptr))
    (block $done
      (loop $outer
        (br_if $done (i32.gt_u (local.get $i) (local.get $last)))
        (local.set $j (i32.const 0))
        (block $mismatch
          (loop $inner
            (br_if $mismatch
              (i32.ne
                (i32.or (i32.load8_u (i32.add (local.get $i) (local.get $j))) (i32.const 32))
                (i32.load8_u (i32.add (i32.const 512) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (if (i32.eq (local.get $j) (i32.const 28))
              (then
                ;; Found: the deny answer at 64, 112 bytes long.
                (return (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 112)))))
            (br $inner)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    ;; Not found: the allow answer at 0, 19 bytes long.
    (i64.const 19))
)
