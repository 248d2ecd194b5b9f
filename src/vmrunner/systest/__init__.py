"""System tests: build, install, boot and check a system configuration in a VM."""
