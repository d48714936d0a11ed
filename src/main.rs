use warden::alloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    warden::alloc::no_huge_pages();
    std::process::exit(warden::cli::main());
}
