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
use crate::error::{ValidationCode, ValidationError};

/// Deepest nesting of collections (sequences and mappings, flow or block)
/// a graph document may have. A real graph is about six levels deep (nodes,
/// a node, its config, a template's JSON); serde_yaml itself stops at 128.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Refuses a document whose collections nest deeper than `max_depth`, or
/// that is not YAML at all, without building anything: the walk stops at
/// the first collection too deep.
pub fn check_nesting(text: &str, max_depth: usize) -> Result<(), OrchestratorError> {
    let too_deep = |line: usize, column: usize| OrchestratorError::Yaml {
        line,
        column: column + 1,
        message: format!("the document nests deeper than {max_depth} levels of lists and maps"),
    };
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    let mut depth = 0usize;
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|error| {
            let (line, column) = (error.marker().line(), error.marker().col());
            // The scanner reads flow collections ahead of the events and
            // has a nesting limit of its own; say the same as below.
            if error.info().contains("recursion limit") {
                too_deep(line, column)
            } else {
                OrchestratorError::Yaml {
                    line,
                    column: column + 1,
                    message: error.info().to_owned(),
                }
            }
        })?;
        match event {
            saphyr_parser::Event::SequenceStart(..) | saphyr_parser::Event::MappingStart(..) => {
                depth += 1;
                if depth > max_depth {
                    return Err(too_deep(span.start.line(), span.start.col()));
                }
            }
            saphyr_parser::Event::SequenceEnd | saphyr_parser::Event::MappingEnd => {
                depth = depth.saturating_sub(1);
            }
            saphyr_parser::Event::StreamEnd => break,
            _ => {}
        }
    }
    Ok(())
}

/// Parses a graph document (YAML, or JSON, which YAML accepts), checks it
/// against `schemas/json/graph.schema.json` and returns the typed spec.
///
/// Every schema violation is reported, each with its YAML line when found.
/// A document nested deeper than [`MAX_NESTING_DEPTH`] is refused first.
/// Parsing is CPU work proportional to the text: async callers run it on a
/// blocking thread.
pub fn parse_yaml(text: &str) -> Result<GraphSpec, OrchestratorError> {
    // Regression: issue #15, defect 1.
    check_nesting(text, MAX_NESTING_DEPTH)?;
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

    // Regression: issue #15, defect 1.
    #[test]
    fn refuses_documents_nested_too_deep_before_parsing_them() {
        let deep = |depth: usize, open: &str, close: &str| {
            format!(
                "name: g\nnodes: {}{}\n",
                open.repeat(depth),
                close.repeat(depth)
            )
        };
        // 100,000 levels took libyaml 34 s; the walk stops at level 65.
        for text in [
            deep(100_000, "[", "]"),
            deep(100_000, "{a: ", "}"),
            deep(MAX_NESTING_DEPTH, "[", "]"),
            format!("name: g\nnodes:\n{}x\n", "- ".repeat(100_000)),
        ] {
            match parse_yaml(&text).expect_err("too deep") {
                OrchestratorError::Yaml { line, message, .. } => {
                    assert!(line >= 2, "{line}: {message}");
                    assert!(message.contains("deeper than 64"), "{message}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Just within the bound, the document reaches the schema check.
        let within = deep(MAX_NESTING_DEPTH - 2, "[", "]");
        assert!(matches!(
            parse_yaml(&within),
            Err(OrchestratorError::Invalid { .. })
        ));
        check_nesting(TEXT, 4).expect("a real graph is shallow");
        // Unclosed JSON is a YAML error too, reported without a deep walk.
        assert!(matches!(
            check_nesting(&"[".repeat(100_000), MAX_NESTING_DEPTH),
            Err(OrchestratorError::Yaml { .. })
        ));
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
