//! The README quotes the memory a hypervisor gives the library per vCPU
//! and per VM: the figures must be the types' sizes (they were left at
//! an old layout's once, 88 and 32 bytes for 120 and 40).

use arch_timer_virt::{VcpuTimer, VmTimer};

#[test]
fn the_readme_quotes_the_current_type_sizes() {
    let readme = include_str!("../../README.md");
    // Joined into one line: the sentence may wrap anywhere.
    let text = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let quoted = format!(
        "Memory: `VcpuTimer` is {} bytes per vCPU, `VmTimer` {} bytes per VM.",
        size_of::<VcpuTimer>(),
        size_of::<VmTimer>()
    );
    assert!(
        text.contains(&quoted),
        "README.md should say: {quoted} (update it with the layout)"
    );
}
