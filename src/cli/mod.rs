//! The `sprout` command line.

pub fn main() -> i32 {
    if std::env::args_os()
        .next()
        .is_some_and(|arg0| arg0 == "sprout-sandbox-init")
    {
        return crate::sandbox::init_main();
    }
    0
}
