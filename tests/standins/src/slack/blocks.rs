//! Block Kit checks for message blocks, with Slack's limits
//! (<https://docs.slack.dev/reference/block-kit/blocks>,
//! <https://docs.slack.dev/reference/block-kit/composition-objects/text-object>,
//! <https://docs.slack.dev/reference/block-kit/block-elements/button-element>).
//!
//! Errors read like Slack's `invalid_blocks` details:
//! `must be less than 3001 characters [json-pointer:/blocks/0/text/text]`.

use serde_json::Value;

/// At most this many blocks in one message.
pub const MAX_BLOCKS: usize = 50;

/// Block types Slack accepts in messages.
const BLOCK_TYPES: &[&str] = &[
    "actions",
    "context",
    "context_actions",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "table",
    "video",
];

/// Interactive elements allowed in `actions` blocks and as accessories.
const ELEMENT_TYPES: &[&str] = &[
    "button",
    "channels_select",
    "checkboxes",
    "conversations_select",
    "datepicker",
    "datetimepicker",
    "email_text_input",
    "external_select",
    "feedback_buttons",
    "icon_button",
    "image",
    "multi_channels_select",
    "multi_conversations_select",
    "multi_external_select",
    "multi_static_select",
    "multi_users_select",
    "number_input",
    "overflow",
    "plain_text_input",
    "radio_buttons",
    "rich_text_input",
    "static_select",
    "timepicker",
    "url_text_input",
    "users_select",
    "workflow_button",
];

#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, pointer: &str, message: &str) {
        self.0.push(format!("{message} [json-pointer:{pointer}]"));
    }
}

/// Every problem with a message's `blocks`, empty when they are valid.
pub(crate) fn block_errors(blocks: &Value) -> Vec<String> {
    let mut errors = Errors::default();
    let Some(list) = blocks.as_array() else {
        errors.push("/blocks", "must provide an array");
        return errors.0;
    };
    if list.len() > MAX_BLOCKS {
        errors.push(
            "/blocks",
            &format!("no more than {MAX_BLOCKS} items allowed"),
        );
    }
    for (index, block) in list.iter().enumerate() {
        check_block(&mut errors, &format!("/blocks/{index}"), block);
    }
    errors.0
}

fn check_block(errors: &mut Errors, at: &str, block: &Value) {
    let Some(object) = block.as_object() else {
        errors.push(at, "must provide an object");
        return;
    };
    let Some(kind) = object.get("type").and_then(Value::as_str) else {
        errors.push(&format!("{at}/type"), "must provide a string");
        return;
    };
    if !BLOCK_TYPES.contains(&kind) {
        errors.push(&format!("{at}/type"), &format!("unsupported type: {kind}"));
        return;
    }
    optional_string(errors, at, block, "block_id", 255);
    match kind {
        "section" => check_section(errors, at, block),
        "header" => {
            required_text_object(errors, at, block, "text", 150, TextKinds::PlainOnly);
        }
        "context" => {
            if let Some(elements) = required_array(errors, at, block, "elements", 10) {
                for (index, element) in elements.iter().enumerate() {
                    let at = format!("{at}/elements/{index}");
                    match element.get("type").and_then(Value::as_str) {
                        Some("image") => check_image_element(errors, &at, element),
                        Some("plain_text" | "mrkdwn") => {
                            check_text_object(errors, &at, element, 3000, TextKinds::Both);
                        }
                        _ => errors.push(&at, "must be an image element or a text object"),
                    }
                }
            }
        }
        "actions" => {
            if let Some(elements) = required_array(errors, at, block, "elements", 25) {
                for (index, element) in elements.iter().enumerate() {
                    check_element(errors, &format!("{at}/elements/{index}"), element);
                }
            }
        }
        "divider" => {}
        "image" => {
            check_image_source(errors, at, block);
            required_string(errors, at, block, "alt_text", 2000);
            if block.get("title").is_some() {
                required_text_object(errors, at, block, "title", 2000, TextKinds::PlainOnly);
            }
        }
        "markdown" => {
            required_string(errors, at, block, "text", 12000);
        }
        "rich_text" | "context_actions" => {
            required_array(errors, at, block, "elements", usize::MAX);
        }
        "input" => {
            required_text_object(errors, at, block, "label", 2000, TextKinds::PlainOnly);
            match block.get("element") {
                Some(element) => check_element(errors, &format!("{at}/element"), element),
                None => errors.push(&format!("{at}/element"), "must provide an object"),
            }
        }
        "file" => {
            required_string(errors, at, block, "external_id", 255);
            required_string(errors, at, block, "source", 255);
        }
        "video" => {
            required_string(errors, at, block, "alt_text", 2000);
            required_text_object(errors, at, block, "title", 200, TextKinds::PlainOnly);
            required_string(errors, at, block, "thumbnail_url", 3000);
            required_string(errors, at, block, "video_url", 3000);
        }
        "table" => {
            required_array(errors, at, block, "rows", 100);
        }
        _ => {}
    }
}

fn check_section(errors: &mut Errors, at: &str, block: &Value) {
    let has_text = block.get("text").is_some();
    let has_fields = block.get("fields").is_some();
    if !has_text && !has_fields {
        errors.push(at, "must provide either text or fields");
    }
    if has_text {
        required_text_object(errors, at, block, "text", 3000, TextKinds::Both);
    }
    if has_fields {
        if let Some(fields) = required_array(errors, at, block, "fields", 10) {
            for (index, field) in fields.iter().enumerate() {
                check_text_object(
                    errors,
                    &format!("{at}/fields/{index}"),
                    field,
                    2000,
                    TextKinds::Both,
                );
            }
        }
    }
    if let Some(accessory) = block.get("accessory") {
        check_element(errors, &format!("{at}/accessory"), accessory);
    }
}

fn check_element(errors: &mut Errors, at: &str, element: &Value) {
    let Some(kind) = element.get("type").and_then(Value::as_str) else {
        errors.push(&format!("{at}/type"), "must provide a string");
        return;
    };
    if !ELEMENT_TYPES.contains(&kind) {
        errors.push(
            &format!("{at}/type"),
            &format!("unsupported element type: {kind}"),
        );
        return;
    }
    optional_string(errors, at, element, "action_id", 255);
    match kind {
        "button" => {
            required_text_object(errors, at, element, "text", 75, TextKinds::PlainOnly);
            optional_string(errors, at, element, "url", 3000);
            optional_string(errors, at, element, "value", 2000);
            if let Some(style) = element.get("style") {
                if !matches!(style.as_str(), Some("primary" | "danger")) {
                    errors.push(&format!("{at}/style"), "must be a valid enum value");
                }
            }
        }
        "image" => check_image_element(errors, at, element),
        _ => {}
    }
}

fn check_image_element(errors: &mut Errors, at: &str, element: &Value) {
    check_image_source(errors, at, element);
    required_string(errors, at, element, "alt_text", 2000);
}

fn check_image_source(errors: &mut Errors, at: &str, value: &Value) {
    match (value.get("image_url"), value.get("slack_file")) {
        (Some(_), _) => {
            required_string(errors, at, value, "image_url", 3000);
        }
        (None, Some(file)) if file.is_object() => {}
        _ => errors.push(at, "must provide either image_url or slack_file"),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum TextKinds {
    PlainOnly,
    Both,
}

fn required_text_object(
    errors: &mut Errors,
    at: &str,
    parent: &Value,
    field: &str,
    max: usize,
    kinds: TextKinds,
) {
    let at = format!("{at}/{field}");
    match parent.get(field) {
        Some(text) => check_text_object(errors, &at, text, max, kinds),
        None => errors.push(&at, "must provide an object"),
    }
}

fn check_text_object(errors: &mut Errors, at: &str, text: &Value, max: usize, kinds: TextKinds) {
    if !text.is_object() {
        errors.push(at, "must provide an object");
        return;
    }
    match text.get("type").and_then(Value::as_str) {
        Some("plain_text") => {}
        Some("mrkdwn") if kinds == TextKinds::Both => {}
        Some("mrkdwn") => errors.push(&format!("{at}/type"), "must be plain_text"),
        _ => errors.push(&format!("{at}/type"), "must be a valid enum value"),
    }
    match text.get("text").and_then(Value::as_str) {
        Some(string) => check_length(errors, &format!("{at}/text"), string, 1, max),
        None => errors.push(&format!("{at}/text"), "must provide a string"),
    }
}

fn required_string(errors: &mut Errors, at: &str, parent: &Value, field: &str, max: usize) {
    let at = format!("{at}/{field}");
    match parent.get(field).and_then(Value::as_str) {
        Some(string) => check_length(errors, &at, string, 1, max),
        None => errors.push(&at, "must provide a string"),
    }
}

fn optional_string(errors: &mut Errors, at: &str, parent: &Value, field: &str, max: usize) {
    if parent.get(field).is_some() {
        required_string(errors, at, parent, field, max);
    }
}

fn required_array<'v>(
    errors: &mut Errors,
    at: &str,
    parent: &'v Value,
    field: &str,
    max: usize,
) -> Option<&'v Vec<Value>> {
    let at = format!("{at}/{field}");
    let Some(list) = parent.get(field).and_then(Value::as_array) else {
        errors.push(&at, "must provide an array");
        return None;
    };
    if list.is_empty() {
        errors.push(&at, "must provide at least 1 item");
    }
    if list.len() > max {
        errors.push(&at, &format!("no more than {max} items allowed"));
    }
    Some(list)
}

fn check_length(errors: &mut Errors, at: &str, string: &str, min: usize, max: usize) {
    let length = string.chars().count();
    if length < min {
        errors.push(at, &format!("must be more than {} characters", min - 1));
    } else if length > max {
        errors.push(at, &format!("must be less than {} characters", max + 1));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn section(text: &str) -> Value {
        json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    }

    #[test]
    fn a_typical_alert_is_valid() {
        let blocks = json!([
            {"type": "header", "text": {"type": "plain_text", "text": "Job failed", "emoji": true}},
            section("*backup* failed after 3 attempts"),
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": "*Schedule*\nbackup"},
                {"type": "mrkdwn", "text": "*Attempt*\n3"}
            ]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "patrol on host-1"}]},
            {"type": "divider"},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open run"},
                 "url": "https://patrol.example/runs/1", "style": "primary"}
            ]}
        ]);
        assert_eq!(block_errors(&blocks), Vec::<String>::new());
    }

    #[test]
    fn limits_are_enforced_with_pointers() {
        let long = "x".repeat(3001);
        let errors = block_errors(&json!([section(&long)]));
        assert_eq!(
            errors,
            ["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]
        );
        let header = json!([{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]);
        assert_eq!(
            block_errors(&header),
            ["must be plain_text [json-pointer:/blocks/0/text/type]"]
        );
        let many: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
        assert_eq!(
            block_errors(&Value::Array(many)),
            ["no more than 50 items allowed [json-pointer:/blocks]"]
        );
        let unknown = json!([{"type": "banner"}]);
        assert_eq!(
            block_errors(&unknown),
            ["unsupported type: banner [json-pointer:/blocks/0/type]"]
        );
    }
}
