//! AFL++ target `manifest`: see [`simpul_fuzz::manifest`].
fn main() {
    afl::fuzz!(|data: &[u8]| simpul_fuzz::manifest(data));
}
