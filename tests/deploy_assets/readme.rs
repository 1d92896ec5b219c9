//! `deploy/README.md` mentions every file under `deploy/` and the command that checks them.

use crate::support::{deploy, read};

#[test]
fn deploy_readme_covers_every_asset() {
    let readme = read(&deploy("README.md"));
    let mut stack = vec![deploy("")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.ends_with("README.md") {
                let rel = path
                    .strip_prefix(deploy(""))
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                assert!(
                    readme.contains(&rel),
                    "deploy/README.md does not mention {rel}"
                );
            }
        }
    }
    assert!(readme.contains("cargo test --test deploy_assets"));
}
