//! AFL++ target `jws`: see [`simpul_fuzz::jws`].
fn main() {
    afl::fuzz!(|data: &[u8]| simpul_fuzz::jws(data));
}
