// The official `openai` npm client against `ciel-llm serve`, unchanged but
// for the base URL: model listing, chat (plain and streamed), completions,
// and the errors a client must be able to tell apart (400 with param, 401,
// 404). Prints TAP lines and "# N passed, N failed"; exits 1 on a failure.
//
// env: NODE_DEPS (a node_modules dir holding openai), OAI_BASE (…/openai/v1),
//      OAI_KEY (the bearer token), OAI_MODEL (the served model's id)
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.NODE_DEPS, 'noop.js'));
const OpenAI = require('openai');

const base = process.env.OAI_BASE;
const model = process.env.OAI_MODEL;
const client = new OpenAI({ baseURL: base, apiKey: process.env.OAI_KEY, maxRetries: 0, timeout: 60000 });

let passed = 0, failed = 0;
function check(desc, cond, detail) {
	if (cond) {
		passed++;
		console.log(`ok ${passed + failed} - ${desc}`);
	} else {
		failed++;
		console.log(`not ok ${passed + failed} - ${desc}`);
		if (detail !== undefined) console.log(`#   ${JSON.stringify(detail)}`.slice(0, 2000));
	}
}

async function expectError(desc, fn, cls, status, param) {
	try {
		await fn();
		check(desc, false, 'no error thrown');
	} catch (e) {
		check(desc, e instanceof cls && e.status === status && (param === undefined || e.param === param),
			{ name: e.constructor.name, status: e.status, param: e.param, code: e.code, message: e.message });
	}
}

const messages = [
	{ role: 'system', content: 'You tell stories.' },
	{ role: 'user', content: 'Once upon a time' },
];
const greedy = { model, messages, temperature: 0, seed: 7, max_tokens: 24 };

try {
	// models
	const models = await client.models.list();
	check('models.list has the served model', models.data.some((m) => m.id === model && m.object === 'model'), models.data);
	const one = await client.models.retrieve(model);
	check('models.retrieve gives it', one.id === model, one);

	// chat, not streamed
	const r = await client.chat.completions.create(greedy);
	const text = r.choices[0].message.content;
	check('chat: an answer', r.object === 'chat.completion' && r.id.startsWith('chatcmpl-') && r.model === model, r);
	check('chat: assistant content, not empty', r.choices[0].message.role === 'assistant' && text.length > 0, r.choices[0]);
	check('chat: finish_reason stop or length', ['stop', 'length'].includes(r.choices[0].finish_reason), r.choices[0]);
	check('chat: usage sums up', r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0 &&
		r.usage.completion_tokens <= 24 && r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, r.usage);
	check('chat: max_tokens 24 reached gives length', r.usage.completion_tokens < 24 || r.choices[0].finish_reason === 'length', r);

	// chat, streamed: same text for the same greedy request
	const stream = await client.chat.completions.create({ ...greedy, stream: true, stream_options: { include_usage: true } });
	let streamed = '', first = null, finish = null, usage = null, n = 0, ids = new Set();
	for await (const chunk of stream) {
		n++;
		ids.add(chunk.id);
		if (chunk.object !== 'chat.completion.chunk') throw new Error(`chunk object ${chunk.object}`);
		if (chunk.choices.length) {
			const c = chunk.choices[0];
			if (first === null) first = c.delta;
			if (c.delta.content) streamed += c.delta.content;
			if (c.finish_reason) finish = c.finish_reason;
		}
		if (chunk.usage) usage = chunk.usage;
	}
	check('stream: first delta carries the role', first && first.role === 'assistant', first);
	check('stream: chunks concatenate to the non-stream text', streamed === text, { streamed, text });
	check('stream: one id over all chunks', ids.size === 1 && n > 2, { ids: [...ids], n });
	check('stream: same finish_reason', finish === r.choices[0].finish_reason, { finish });
	check('stream: include_usage gives the usage chunk', usage && usage.prompt_tokens === r.usage.prompt_tokens &&
		usage.completion_tokens === r.usage.completion_tokens && usage.total_tokens === r.usage.total_tokens, usage);

	// sampling with a seed is reproducible
	const sampled = { model, messages, temperature: 0.9, top_p: 0.95, seed: 1234, max_tokens: 20 };
	const s1 = await client.chat.completions.create(sampled);
	const s2 = await client.chat.completions.create(sampled);
	check('same seed, same sampled text', s1.choices[0].message.content === s2.choices[0].message.content, [s1.choices[0], s2.choices[0]]);

	// legacy completions, plain and streamed
	const c = await client.completions.create({ model, prompt: 'Once upon a time', temperature: 0, max_tokens: 16 });
	check('completions: text and usage', c.object === 'text_completion' && c.choices[0].text.length > 0 &&
		c.usage.total_tokens === c.usage.prompt_tokens + c.usage.completion_tokens, c);
	const cs = await client.completions.create({ model, prompt: 'Once upon a time', temperature: 0, max_tokens: 16, stream: true });
	let ctext = '';
	for await (const chunk of cs) ctext += chunk.choices[0]?.text ?? '';
	check('completions stream: same text', ctext === c.choices[0].text, { ctext, text: c.choices[0].text });
	check('stop sequence ends the answer before it', await (async () => {
		const words = c.choices[0].text.trim().split(/\s+/);
		const stop = words.length > 2 ? ' ' + words[2] : null;
		if (!stop) return false;
		const cut = await client.completions.create({ model, prompt: 'Once upon a time', temperature: 0, max_tokens: 16, stop: [stop] });
		return cut.choices[0].finish_reason === 'stop' && !cut.choices[0].text.includes(stop) &&
			c.choices[0].text.startsWith(cut.choices[0].text);
	})());

	// errors
	await expectError('bad temperature: BadRequestError 400 naming the param',
		() => client.chat.completions.create({ ...greedy, temperature: 5 }), OpenAI.BadRequestError, 400, 'temperature');
	await expectError('n = 2: 400 naming n', () => client.chat.completions.create({ ...greedy, n: 2 }), OpenAI.BadRequestError, 400, 'n');
	await expectError('unknown model: NotFoundError 404', () => client.chat.completions.create({ ...greedy, model: 'nosuch' }),
		OpenAI.NotFoundError, 404, 'model');
	const bad = new OpenAI({ baseURL: base, apiKey: 'wrong-key', maxRetries: 0 });
	await expectError('wrong key: AuthenticationError 401', () => bad.models.list(), OpenAI.AuthenticationError, 401);
	await expectError('wrong key on chat: 401', () => bad.chat.completions.create(greedy), OpenAI.AuthenticationError, 401);
} catch (e) {
	check(`no unexpected exception`, false, { name: e?.constructor?.name, message: e?.message, status: e?.status });
}
console.log(`# ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
