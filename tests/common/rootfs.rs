//! A minimal busybox root filesystem for sandbox tests.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Fill `root` with `/bin/busybox` and its applets, `/etc/passwd` and `/etc/group` (root and
/// `app` 1000), a sticky `/tmp`, and `/data/{keep,sub/file}` to modify.
pub fn busybox_rootfs(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir_all(root.join("data/sub")).unwrap();
    fs::write(root.join("data/sub/file"), "lower\n").unwrap();
    fs::write(root.join("data/keep"), "keep\n").unwrap();
}
