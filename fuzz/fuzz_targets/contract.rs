//! AFL++ target `contract`: see [`simpul_fuzz::contract`].
fn main() {
    afl::fuzz!(|data: &[u8]| simpul_fuzz::contract(data));
}
