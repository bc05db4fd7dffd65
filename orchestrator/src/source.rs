//! Parsing graph documents and pointing at their lines.
//!
//! `serde_yaml` gives positions only for syntax errors, so semantic errors
//! (an unknown agent in `/nodes/3/agent`) are located by [`SourceMap`], a
//! small indentation scanner over block-style YAML. It resolves a JSON
//! pointer to the line and column of the deepest key or list item it can
//! find; flow-style parts (`to: [a, b]`) resolve to their key's line.

use convergio_schemas::{validate as schema_validate, SchemaId};
use serde_json::Value;

use crate::dsl::GraphSpec;
use crate::error::OrchestratorError;
use crate::validate::{ValidationCode, ValidationError};

/// Parses a graph document (YAML, or JSON, which YAML accepts), checks it
/// against `schemas/json/graph.schema.json` and returns the typed spec.
///
/// Every schema violation is reported, each with its YAML line when found.
pub fn parse_yaml(text: &str) -> Result<GraphSpec, OrchestratorError> {
    let value: Value = serde_yaml::from_str(text).map_err(|error| {
        let (line, column) = error
            .location()
            .map(|location| (location.line(), location.column()))
            .unwrap_or((0, 0));
        OrchestratorError::Yaml {
            line,
            column,
            message: error.to_string(),
        }
    })?;
    let source_map = SourceMap::new(text);
    if let Err(violations) = schema_validate(SchemaId::Graph, &value) {
        let errors = violations
            .into_iter()
            .map(|violation| {
                let position = source_map.locate(&violation.pointer);
                ValidationError {
                    code: ValidationCode::Schema,
                    message: violation.message,
                    pointer: violation.pointer,
                    line: position.map(|(line, _)| line),
                    column: position.map(|(_, column)| column),
                }
            })
            .collect();
        return Err(OrchestratorError::Invalid { errors });
    }
    let mut spec: GraphSpec =
        serde_json::from_value(value).map_err(|error| OrchestratorError::Invalid {
            errors: vec![ValidationError {
                code: ValidationCode::Schema,
                message: error.to_string(),
                pointer: String::new(),
                line: None,
                column: None,
            }],
        })?;
    let source: std::sync::Arc<str> = std::sync::Arc::from(text);
    attach_source(&mut spec, &source);
    Ok(spec)
}

fn attach_source(spec: &mut GraphSpec, source: &std::sync::Arc<str>) {
    spec.source = Some(source.clone());
    // Sub-graphs share the text; their pointers are prefixed when located.
}

/// Line index of a YAML text, resolving JSON pointers to positions.
#[derive(Debug, Clone)]
pub struct SourceMap<'t> {
    lines: Vec<&'t str>,
}

/// A region of lines whose direct children start at `column`.
#[derive(Debug, Clone, Copy)]
struct Block {
    start: usize,
    end: usize,
    column: usize,
}

// === impl SourceMap ===

impl<'t> SourceMap<'t> {
    /// Indexes `text`.
    pub fn new(text: &'t str) -> Self {
        Self {
            lines: text.lines().collect(),
        }
    }

    /// The 1-based (line, column) of the value at `pointer`, or of the
    /// deepest enclosing key or item that could be found.
    pub fn locate(&self, pointer: &str) -> Option<(usize, usize)> {
        let mut block = Block {
            start: 0,
            end: self.lines.len(),
            column: self.first_column(0)?,
        };
        let mut found = None;
        for segment in pointer.split('/').skip(1) {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            let next = match segment.parse::<usize>() {
                Ok(index) => self.find_item(block, index),
                Err(_) => None,
            }
            .or_else(|| self.find_key(block, &segment));
            match next {
                Some((line, column, child)) => {
                    found = Some((line + 1, column + 1));
                    block = child;
                }
                None => break,
            }
        }
        found
    }

    fn first_column(&self, from: usize) -> Option<usize> {
        self.lines[from..]
            .iter()
            .find(|line| !is_blank(line))
            .map(|line| indent(line))
    }

    /// Column where a line's content starts, after any `- ` item markers.
    fn content_column(line: &str) -> usize {
        let mut column = indent(line);
        let bytes = line.as_bytes();
        while column < bytes.len() && bytes[column] == b'-' {
            let after = column + 1;
            if after < bytes.len() && bytes[after] != b' ' {
                break;
            }
            column = after;
            while column < bytes.len() && bytes[column] == b' ' {
                column += 1;
            }
        }
        column
    }

    fn find_key(&self, block: Block, key: &str) -> Option<(usize, usize, Block)> {
        for line_index in block.start..block.end {
            let line = self.lines[line_index];
            if is_blank(line) {
                continue;
            }
            let column = Self::content_column(line);
            if column != block.column {
                continue;
            }
            let rest = &line[column..];
            let rest = rest.trim_start_matches(['"', '\'']);
            if let Some(after) = rest.strip_prefix(key) {
                let after = after.trim_start_matches(['"', '\'']);
                if after.starts_with(':') {
                    let child = self.child_block(line_index, block.end, column);
                    return Some((line_index, column, child));
                }
            }
        }
        None
    }

    fn child_block(&self, line_index: usize, limit: usize, parent_column: usize) -> Block {
        let start = line_index + 1;
        let mut end = start;
        let mut column = None;
        while end < limit {
            let line = self.lines[end];
            if !is_blank(line) {
                let line_indent = indent(line);
                let compact_item =
                    line_indent == parent_column && line[line_indent..].starts_with('-');
                if line_indent < parent_column || (line_indent == parent_column && !compact_item) {
                    break;
                }
                if column.is_none() {
                    column = Some(line_indent);
                }
            }
            end += 1;
        }
        Block {
            start,
            end,
            column: column.unwrap_or(usize::MAX),
        }
    }

    fn find_item(&self, block: Block, index: usize) -> Option<(usize, usize, Block)> {
        let mut seen = 0;
        let mut items = (block.start..block.end).filter(|&line_index| {
            let line = self.lines[line_index];
            !is_blank(line) && indent(line) == block.column && line[block.column..].starts_with('-')
        });
        let item_line = loop {
            let candidate = items.next()?;
            if seen == index {
                break candidate;
            }
            seen += 1;
        };
        let next_item = items.next().unwrap_or(block.end);
        let column = Self::content_column(self.lines[item_line]);
        Some((
            item_line,
            block.column,
            Block {
                start: item_line,
                end: next_item,
                column,
            },
        ))
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed.is_empty() || trimmed.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name: g\nnodes:\n  - id: a\n    agent: x\n\n  - id: b\n    agent: y\n    inputs: [a.output]\nedges:\n- from: a\n  to: b\n";

    #[test]
    fn locates_keys_items_and_compact_lists() {
        let map = SourceMap::new(TEXT);
        assert_eq!(map.locate("/name"), Some((1, 1)));
        assert_eq!(map.locate("/nodes/1"), Some((6, 3)));
        assert_eq!(map.locate("/nodes/1/agent"), Some((7, 5)));
        assert_eq!(map.locate("/nodes/1/inputs/0"), Some((8, 5)));
        assert_eq!(map.locate("/edges/0/to"), Some((11, 3)));
        assert_eq!(map.locate("/nodes/7"), Some((2, 1)));
    }

    #[test]
    fn reports_yaml_syntax_errors_with_line_and_column() {
        let error = parse_yaml("name: g\nnodes: [\n").expect_err("broken yaml");
        match error {
            OrchestratorError::Yaml { line, .. } => assert!(line >= 2),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reports_schema_violations_at_their_line() {
        let error = parse_yaml("name: g\nnodes:\n  - id: a\n    agent: x\n    colour: red\n")
            .expect_err("unknown field");
        let errors = error.validation_errors();
        assert!(!errors.is_empty());
        assert!(
            errors
                .iter()
                .any(|e| e.line == Some(3) || e.line == Some(5)),
            "{errors:?}"
        );
    }
}
