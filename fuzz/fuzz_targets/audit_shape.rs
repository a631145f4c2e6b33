#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_edge::fuzzing::audit_shape(data));
