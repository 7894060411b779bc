// Links the installed libmsa: the directory $MSA_LIB_DIR, else $MSA_PREFIX/lib, else the directories
// `pkg-config --libs-only-L msa` names. An rpath is recorded so the example runs without LD_LIBRARY_PATH.
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MSA_LIB_DIR");
    println!("cargo:rerun-if-env-changed=MSA_PREFIX");
    let mut dirs: Vec<String> = Vec::new();
    if let Ok(dir) = env::var("MSA_LIB_DIR") {
        dirs.push(dir);
    } else if let Ok(prefix) = env::var("MSA_PREFIX") {
        dirs.push(format!("{}/lib", prefix));
    } else if let Ok(out) = Command::new("pkg-config").args(["--libs-only-L", "msa"]).output() {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        dirs.extend(text.split_whitespace().filter_map(|f| f.strip_prefix("-L")).map(String::from));
    }
    for d in &dirs {
        println!("cargo:rustc-link-search=native={}", d);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", d);
    }
    println!("cargo:rustc-link-lib=dylib=msa");
}
