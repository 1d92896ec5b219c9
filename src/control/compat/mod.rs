//! The compatibility surfaces: each vendor's paths, casing and shapes in one module, as a thin
//! adapter over the native core, so their operators' clients and scripts work unchanged.

pub mod automem;
pub mod compozy;
pub mod goodmem;
pub mod goodmem_log_policies;
pub mod goodmem_log_policy_list;
pub mod memory_service;
pub mod memory_service_admin;
