//! AFL++ target `query`: see [`simpul_fuzz::query`].
fn main() {
    afl::fuzz!(|data: &[u8]| simpul_fuzz::query(data));
}
