//! /proc/self/mountinfo (proc(5)), read once here for init (which mounts and unmounts by
//! it) and for the cgroup2 lookup of every program.

/// One line of mountinfo: the parts warden needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    pub fstype: String,
}

/// Parses mountinfo text: field 5 is the mount point, with blanks and the like escaped as
/// `\040`; the type follows the ` - ` separator. Lines that are not so are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = unescape(left.split(' ').nth(4)?);
            let fstype = right.split(' ').next()?.to_owned();
            Some(Mount {
                mount_point,
                fstype,
            })
        })
        .collect()
}

/// The calling process's mount table, in mount order.
pub fn read() -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` `\`).
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes.get(i) == Some(&b'\\') && d.iter().all(|b| (b'0'..=b'7').contains(b))
        });
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes.get(i).copied().unwrap_or(b'?'));
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
1 1 0:2 / / rw - rootfs rootfs rw,size=110000k
20 1 0:19 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
23 1 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs devtmpfs rw,size=110000k,mode=755
30 1 254:0 / /var/log\\040old rw,relatime - ext4 /dev/vda rw
not a mountinfo line
";

    #[test]
    fn gives_points_and_types_in_order() {
        let table = parse(SAMPLE);
        let points: Vec<_> = table.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, ["/", "/proc", "/dev", "/var/log old"]);
        assert_eq!(table[3].fstype, "ext4");
        assert_eq!(table[2].fstype, "devtmpfs");
    }

    #[test]
    fn unescape_leaves_plain_backslashes_alone() {
        assert_eq!(unescape("/a\\134b"), "/a\\b");
        assert_eq!(unescape("/a\\x"), "/a\\x");
        assert_eq!(unescape("/tab\\011"), "/tab\t");
        assert_eq!(unescape("/sys/fs/a\\040b"), "/sys/fs/a b");
        assert_eq!(unescape("/plain\\"), "/plain\\");
    }

    #[test]
    fn this_process_has_a_root() {
        assert!(read().unwrap().iter().any(|m| m.mount_point == "/"));
    }
}
