//! AFL++ target `sql`: see [`simpul_fuzz::sql`].
fn main() {
    afl::fuzz!(|data: &[u8]| simpul_fuzz::sql(data));
}
