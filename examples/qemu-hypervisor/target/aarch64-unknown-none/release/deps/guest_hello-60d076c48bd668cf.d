/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/guest_hello-60d076c48bd668cf.d: examples/qemu-hypervisor/guest-hello/main.rs examples/qemu-hypervisor/guest-hello/../src/hypercall.rs

/work/main/examples/qemu-hypervisor/target/aarch64-unknown-none/release/deps/guest_hello-60d076c48bd668cf: examples/qemu-hypervisor/guest-hello/main.rs examples/qemu-hypervisor/guest-hello/../src/hypercall.rs

examples/qemu-hypervisor/guest-hello/main.rs:
examples/qemu-hypervisor/guest-hello/../src/hypercall.rs:
