//! `mnemo key`: a new API key and the server config lines that grant it.

use rand::Rng;

/// `mnemo key`: a new random key (32 bytes from the thread-local CSPRNG, hex) and the
/// TOML that grants it, holding only its digest.
pub(crate) fn new_key(name: &str) {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let digest = mnemo_server::auth::key_digest_hex(&key);
    println!("# API key '{name}': give it to the client (--api-key or MNEMO_API_KEY):");
    println!("#   {key}");
    println!("# and add this to the server's config file (it holds no secret):");
    println!("[[auth.keys]]");
    println!("name = {}", toml::Value::from(name));
    println!("key_sha256 = \"{digest}\"");
    println!("read = [\"*\"]   # space patterns: \"*\", \"prefix*\" or a name");
    println!("write = [\"*\"]");
    println!("admin = []      # create / drop");
}
