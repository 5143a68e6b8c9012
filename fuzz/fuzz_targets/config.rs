//! AFL++ target `config`: see [`simpul_fuzz::config`].
fn main() {
    afl::fuzz!(|data: &[u8]| simpul_fuzz::config(data));
}
