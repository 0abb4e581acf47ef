//! What a component imports and exports, read from its bytes before it is
//! compiled: a wrong world or an ungranted import is refused in
//! milliseconds, even for an 18 MB Python component that would take seconds
//! to compile.

use wasmparser::{Parser, Payload};

/// The top-level imports and exports of a component (names as written,
/// with their versions: `wasi:io/streams@0.2.6`).
#[derive(Debug, Default)]
pub(crate) struct Interface {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Reads the top level only: imports and exports of nested components and
/// core modules are the component's own business.
pub(crate) fn inspect(bytes: &[u8]) -> Result<Interface, String> {
    let mut found = Interface::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("failed to compile: {e}"))? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let import = import.map_err(|e| format!("failed to compile: {e}"))?;
                    found.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    let export = export.map_err(|e| format!("failed to compile: {e}"))?;
                    found.exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_top_level_imports_and_exports_only() {
        let bytes = wat::parse_str(
            r#"(component
                (import "wasi:io/streams@0.2.6" (instance))
                (component $inner (import "nested:not/seen" (instance)))
                (core module $m (func (export "x")))
                (instance $i (instantiate $inner (with "nested:not/seen" (instance))))
                (export "a:b/c@1.0.0" (instance $i))
            )"#,
        )
        .expect("wat");
        let found = inspect(&bytes).expect("inspect");
        assert_eq!(found.imports, ["wasi:io/streams@0.2.6"]);
        assert_eq!(found.exports, ["a:b/c@1.0.0"]);
    }

    #[test]
    fn truncated_bytes_are_an_error() {
        let bytes = wat::parse_str(r#"(component (import "a:b/c" (instance)))"#).expect("wat");
        assert!(inspect(&bytes[..bytes.len() - 3]).is_err());
    }
}
