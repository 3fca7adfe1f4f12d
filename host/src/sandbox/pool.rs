//! The instance pool's per-component limits, and what a refusal by one of
//! them says.
//!
//! wasmtime's pooling allocator reserves fixed slots, so it checks each
//! component against the slot sizes when the component is compiled. Its
//! refusal names wasmtime's own knobs; [`over_limit`] turns it into a
//! sentence naming the component's figure, this host's limit and the
//! `[sandbox]` setting that raises it.

use wasmtime::PoolingAllocationConfig;

/// What one component may hold. Slots are reserved for the maximum, so a
/// larger value costs address space (and some memory) for every instance
/// the host may run at once, whatever the handlers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLimits {
    /// Core module instances in one component, counted transitively.
    pub core_instances_per_component: u32,
    /// Linear memories in one component (and in one of its core modules).
    pub memories_per_component: u32,
    /// Tables in one component (and in one of its core modules).
    pub tables_per_component: u32,
    /// Elements a table may start with.
    pub table_elements: usize,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            core_instances_per_component: 16,
            memories_per_component: 2,
            tables_per_component: 8,
            table_elements: 20_000,
        }
    }
}

impl PoolLimits {
    /// Sizes `pool` for `instances` component instances at once.
    pub(super) fn apply(&self, pool: &mut PoolingAllocationConfig, instances: u32) {
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(self.core_instances_per_component))
            .max_core_instances_per_component(self.core_instances_per_component)
            .total_memories(instances.saturating_mul(self.memories_per_component))
            .max_memories_per_component(self.memories_per_component)
            .max_memories_per_module(self.memories_per_component)
            .total_tables(instances.saturating_mul(self.tables_per_component))
            .max_tables_per_component(self.tables_per_component)
            .max_tables_per_module(self.tables_per_component)
            .table_elements(self.table_elements)
            // One fiber stack per instance: every invocation runs on one.
            .total_stacks(instances);
    }
}

/// What to say about a refusal by the pool; `None` when `error` is not one.
pub(super) fn over_limit(error: &str) -> Option<String> {
    // (what wasmtime says, what the component has, what the host allows, the setting)
    const RULES: &[(&str, &str, &str, &str)] = &[
        (
            r"contains (\d+) core module instances, which exceeds the configured maximum of (\d+)",
            "core module instances",
            "per component",
            "[sandbox] max_core_instances_per_component",
        ),
        (
            r"contains (\d+) Wasm linear memories, which exceeds the configured maximum of (\d+)",
            "linear memories",
            "per component",
            "[sandbox] max_memories_per_component",
        ),
        (
            r"defined memories count of (\d+) exceeds the per-instance limit of (\d+)",
            "linear memories in one core module",
            "per module",
            "[sandbox] max_memories_per_component",
        ),
        (
            r"contains (\d+) tables, which exceeds the configured maximum of (\d+)",
            "tables",
            "per component",
            "[sandbox] max_tables_per_component",
        ),
        (
            r"defined tables count of (\d+) exceeds the per-instance limit of (\d+)",
            "tables in one core module",
            "per module",
            "[sandbox] max_tables_per_component",
        ),
        (
            r"minimum element size of (\d+) which exceeds the limit of (\d+)",
            "table elements at start",
            "per table",
            "[sandbox] max_table_elements",
        ),
        (
            r"memory has a minimum byte size of (\d+) which exceeds the limit of (\d+|0x[0-9a-fA-F]+) bytes",
            "bytes of linear memory at start",
            "per memory",
            "[sandbox] max_memory_mib",
        ),
    ];
    for (pattern, what, per, setting) in RULES {
        let Ok(re) = regex::Regex::new(pattern) else {
            continue;
        };
        if let Some(found) = re.captures(error) {
            return Some(format!(
                "the component needs {} {what}, above this host's maximum of {} {per}; \
                 `{setting}` raises it",
                &found[1],
                decimal(&found[2])
            ));
        }
    }
    if error.contains("exceeds the configured maximum") && error.contains("instance allocation") {
        return Some(format!(
            "the component's instance state is larger than a pool slot holds ({}); \
             split the component or lower what it defines",
            first_line(error)
        ));
    }
    None
}

/// A figure wasmtime printed in decimal or in hex, in decimal.
fn decimal(figure: &str) -> String {
    match figure.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).map_or(figure.to_owned(), |n| n.to_string()),
        None => figure.to_owned(),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text).trim_end_matches(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_figure_the_limit_and_the_setting() {
        let said = over_limit(
            "failed to compile: The component transitively contains 38 core module instances, \
             which exceeds the configured maximum of 16 in the pooling allocator",
        )
        .expect("a pool refusal");
        assert_eq!(
            said,
            "the component needs 38 core module instances, above this host's maximum of 16 per \
             component; `[sandbox] max_core_instances_per_component` raises it"
        );
        let said = over_limit(
            "memory index 0 is unsupported in this pooling allocator configuration: memory has \
             a minimum byte size of 1073741824 which exceeds the limit of 0x10000000 bytes",
        )
        .expect("a pool refusal");
        assert!(said.contains("1073741824 bytes") && said.contains("max_memory_mib"));
        assert!(said.contains("maximum of 268435456 per memory"), "{said}");
    }

    #[test]
    fn leaves_other_errors_alone() {
        assert_eq!(over_limit("invalid leading byte in section"), None);
    }
}
