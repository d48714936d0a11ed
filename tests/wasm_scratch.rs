use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;

#[test]
fn scratch() {
    let engine = warden::wasm::engine::new_engine(&Default::default()).unwrap();
    for f in [
        "complex",
        "mapper",
        "sleep-test",
        "minimal",
        "strings",
        "counter",
        "calculator",
    ] {
        let p = format!(
            "{}/../shared/fixtures/wasm/{f}.wasm",
            env!("CARGO_MANIFEST_DIR")
        );
        let t = std::time::Instant::now();
        let c = Component::from_file(&engine, &p).unwrap();
        println!("== {f} compiled in {:?}", t.elapsed());
        let ty = c.component_type();
        for (n, _) in ty.imports(&engine) {
            println!("  import {n}");
        }
        for (n, e) in ty.exports(&engine) {
            match e.ty {
                ComponentItem::ComponentInstance(i) => {
                    for (m, _) in i.exports(&engine) {
                        println!("  export {n} # {m}");
                    }
                }
                _ => println!("  export {n}"),
            }
        }
    }
}
