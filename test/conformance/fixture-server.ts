/**
 * The conformance fixture: one MCP server definition that implements what the
 * `@modelcontextprotocol/conformance` server scenarios call (their tools,
 * resources, prompts, completion, logging, progress, sampling, elicitation and
 * the multi round-trip `input_required` tools), shared by
 *
 *   - `fixture.ts`          the legacy stdio child the broker spawns,
 *   - `baseline-server.ts`  the same definition served directly over the SDK's
 *                           own HTTP transports (the baselines).
 *
 * Names, arguments and results follow the scenario descriptions in the
 * installed conformance package (`conformance/node_modules/...`). The multi
 * round-trip tools are written once with `inputRequired(...)`: on a modern
 * (2026-07-28) request the SDK returns an `InputRequiredResult`; on a legacy
 * connection (the stdio child) the SDK's legacy shim turns it into ordinary
 * server-to-client requests, which is what the broker must translate back.
 */
import {
  completable,
  createRequestStateCodec,
  fromJsonSchema,
  inputRequired,
  inputResponse,
  McpServer,
  ResourceTemplate,
  type CallToolResult,
  type InputRequest,
  type InputRequests,
  type ClientCapabilities,
  type JsonSchemaType,
  type ServerContext,
} from '@modelcontextprotocol/server';
import * as z from 'zod';

export const FIXTURE_NAME = 'forgejo-mcp-broker-conformance-fixture';
export const FIXTURE_VERSION = '1.0.0';

/** A 1x1 PNG. */
const PNG_BASE64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
/** A minimal WAV header with two bytes of samples. */
const WAV_BASE64 = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';

const WATCHED_RESOURCE_URI = 'test://watched-resource';
const STEP_DELAY_MS = 50;

/** The inputSchema the `json-schema-2020-12` scenario expects verbatim (SEP-1613, SEP-2106). */
const JSON_SCHEMA_2020_12: JsonSchemaType = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  $defs: {
    address: {
      $anchor: 'addressDef',
      type: 'object',
      properties: { street: { type: 'string' }, city: { type: 'string' } },
    },
  },
  properties: {
    name: { type: 'string' },
    address: { $ref: '#/$defs/address' },
    contactMethod: { type: 'string', enum: ['phone', 'email'] },
    phone: { type: 'string' },
    email: { type: 'string' },
  },
  allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
  if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
  then: { required: ['phone'] },
  else: { required: ['email'] },
  additionalProperties: false,
};

/** A tool whose string argument is mirrored into an `Mcp-Param-Region` header (SEP-2243). */
const REGION_PROPERTY: Record<string, unknown> = { type: 'string', description: 'Deployment region', 'x-mcp-header': 'Region' };
const CUSTOM_HEADER_SCHEMA = {
  type: 'object',
  properties: { region: REGION_PROPERTY },
  required: ['region'],
} as JsonSchemaType;

/**
 * What outlives one server instance: the stdio child has one instance, but the
 * modern HTTP baseline builds an instance per request, so the mutable parts
 * (runtime-added tools and prompts, subscriptions) live here.
 */
export interface FixtureState {
  addedTools: number;
  addedPrompts: number;
  readonly subscriptions: Set<string>;
}

export function createFixtureState(): FixtureState {
  return { addedTools: 0, addedPrompts: 0, subscriptions: new Set<string>() };
}

/** How list changes reach clients; the default is the instance's own notifications. */
export interface FixtureHooks {
  readonly toolsChanged?: () => void;
  readonly promptsChanged?: () => void;
}

export interface FixtureOptions {
  readonly state: FixtureState;
  readonly hooks?: FixtureHooks;
  /** HMAC key for `requestState`; at least 32 bytes. Every instance serving one flow must share it. */
  readonly requestStateKey: string;
}

function text(value: string): CallToolResult {
  return { content: [{ type: 'text', text: value }] };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function elicitString(message: string, field: string, type: 'string' | 'boolean' = 'string'): InputRequest {
  const property = type === 'string' ? { type: 'string' as const } : { type: 'boolean' as const };
  return inputRequired.elicit({
    mode: 'form',
    message,
    requestedSchema: { type: 'object', properties: { [field]: property }, required: [field] },
  });
}

function acceptedField(responses: Record<string, unknown> | undefined, key: string, field: string): unknown {
  const view = inputResponse(responses, key);
  if (view.kind !== 'elicit' || view.action !== 'accept') return undefined;
  return view.content?.[field];
}

function samplingText(responses: Record<string, unknown> | undefined, key: string): string | undefined {
  const view = inputResponse(responses, key);
  if (view.kind !== 'sampling') return undefined;
  const content = view.result.content;
  const first = Array.isArray(content) ? content[0] : content;
  return first !== undefined && first.type === 'text' ? first.text : undefined;
}

function rootUris(responses: Record<string, unknown> | undefined, key: string): string[] | undefined {
  const view = inputResponse(responses, key);
  return view.kind === 'roots' ? view.roots.map((root) => root.uri) : undefined;
}

/** Builds one server instance over the shared state. */
export function createFixtureServer(options: FixtureOptions): McpServer {
  const { state } = options;
  const codec = createRequestStateCodec<{ step: string }>({ key: options.requestStateKey });
  const server = new McpServer(
    { name: FIXTURE_NAME, version: FIXTURE_VERSION },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
      requestState: { verify: (wire, ctx) => codec.verify(wire, ctx) },
    },
  );
  const toolsChanged = options.hooks?.toolsChanged ?? (() => server.sendToolListChanged());
  const promptsChanged = options.hooks?.promptsChanged ?? (() => server.sendPromptListChanged());

  registerContentTools(server);
  registerNotifyingTools(server);
  registerServerRequestTools(server);
  registerInputRequiredTools(server, codec);
  registerListChangeTools(server, state, toolsChanged, promptsChanged);
  registerResources(server, state);
  registerPrompts(server, state);
  return server;
}

function registerContentTools(server: McpServer): void {
  server.registerTool('test_simple_text', { description: 'Returns one text content' }, () =>
    text('This is a simple text response for testing.'),
  );
  server.registerTool('test_image_content', { description: 'Returns one image content' }, () => ({
    content: [{ type: 'image', data: PNG_BASE64, mimeType: 'image/png' }],
  }));
  server.registerTool('test_audio_content', { description: 'Returns one audio content' }, () => ({
    content: [{ type: 'audio', data: WAV_BASE64, mimeType: 'audio/wav' }],
  }));
  server.registerTool('test_embedded_resource', { description: 'Returns one embedded resource' }, () => ({
    content: [
      {
        type: 'resource',
        resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
      },
    ],
  }));
  server.registerTool('test_multiple_content_types', { description: 'Returns text, image and resource content' }, () => ({
    content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: PNG_BASE64, mimeType: 'image/png' },
      {
        type: 'resource',
        resource: {
          uri: 'test://mixed-content-resource',
          mimeType: 'application/json',
          text: JSON.stringify({ test: 'data', value: 123 }),
        },
      },
    ],
  }));
  server.registerTool('test_error_handling', { description: 'Always fails' }, () => {
    throw new Error('This tool intentionally returns an error for testing');
  });
  server.registerTool(
    'json_schema_2020_12_tool',
    { description: 'Tool with JSON Schema 2020-12 features', inputSchema: fromJsonSchema(JSON_SCHEMA_2020_12) },
    (args) => text(`received ${JSON.stringify(args)}`),
  );
  server.registerTool(
    'test_custom_header',
    {
      description: 'Echoes a region that is also sent as the Mcp-Param-Region header',
      inputSchema: fromJsonSchema<{ region: string }>(CUSTOM_HEADER_SCHEMA),
    },
    (args) => text(`region=${args.region}`),
  );
}

function registerNotifyingTools(server: McpServer): void {
  server.registerTool('test_tool_with_logging', { description: 'Logs three info messages while it runs' }, async (ctx) => {
    await ctx.mcpReq.log('info', 'Tool execution started');
    await delay(STEP_DELAY_MS);
    await ctx.mcpReq.log('info', 'Tool processing data');
    await delay(STEP_DELAY_MS);
    await ctx.mcpReq.log('info', 'Tool execution completed');
    return text('Tool with logging executed successfully');
  });
  server.registerTool('test_logging_tool', { description: 'Logs one message at each of info and debug' }, async (ctx) => {
    await ctx.mcpReq.log('info', 'test_logging_tool ran');
    await ctx.mcpReq.log('debug', 'test_logging_tool debug detail');
    return text('logged');
  });
  server.registerTool('test_tool_with_progress', { description: 'Reports progress 0, 50, 100 of 100' }, async (ctx) => {
    const progressToken = ctx.mcpReq._meta?.progressToken;
    for (const progress of [0, 50, 100]) {
      if (progressToken !== undefined) {
        await ctx.mcpReq.notify({
          method: 'notifications/progress',
          params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
        });
      }
      if (progress < 100) await delay(STEP_DELAY_MS);
    }
    return text(String(progressToken ?? 'no progress token'));
  });
  server.registerTool(
    'test_reconnection',
    { description: 'Closes its SSE stream mid-call (where the transport can), then answers (SEP-1699)' },
    async (ctx: ServerContext) => {
      ctx.http?.closeSSE?.();
      await delay(100);
      return text('Reconnection test completed successfully.');
    },
  );
}

/** Legacy push-style server-to-client requests (2025-era scenarios only). */
function registerServerRequestTools(server: McpServer): void {
  server.registerTool(
    'test_sampling',
    { description: 'Asks the client for an LLM completion', inputSchema: { prompt: z.string().describe('The prompt to send to the LLM') } },
    async ({ prompt }, ctx) => {
      const result = await ctx.mcpReq.requestSampling({
        messages: [{ role: 'user', content: { type: 'text', text: prompt } }],
        maxTokens: 100,
      });
      const content = Array.isArray(result.content) ? result.content[0] : result.content;
      return text(`LLM response: ${content !== undefined && content.type === 'text' ? content.text : 'No response'}`);
    },
  );
  server.registerTool(
    'test_elicitation',
    { description: 'Asks the user for input', inputSchema: { message: z.string().describe('The message to show the user') } },
    async ({ message }, ctx) => {
      const result = await ctx.mcpReq.elicitInput({
        mode: 'form',
        message,
        requestedSchema: {
          type: 'object',
          properties: {
            username: { type: 'string', description: "User's response" },
            email: { type: 'string', description: "User's email address" },
          },
          required: ['username', 'email'],
        },
      });
      return text(`User response: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`);
    },
  );
  server.registerTool('test_elicitation_sep1034_defaults', { description: 'Elicitation with defaults (SEP-1034)' }, async (ctx) => {
    const result = await ctx.mcpReq.elicitInput({
      mode: 'form',
      message: 'Please review and update the form fields with defaults',
      requestedSchema: {
        type: 'object',
        properties: {
          name: { type: 'string', description: 'User name', default: 'John Doe' },
          age: { type: 'integer', description: 'User age', default: 30 },
          score: { type: 'number', description: 'User score', default: 95.5 },
          status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
          verified: { type: 'boolean', description: 'Verification status', default: true },
        },
        required: [],
      },
    });
    return text(`Elicitation completed: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`);
  });
  server.registerTool('test_elicitation_sep1330_enums', { description: 'Elicitation with every enum form (SEP-1330)' }, async (ctx) => {
    const result = await ctx.mcpReq.elicitInput({
      mode: 'form',
      message: 'Please select options from the enum fields',
      requestedSchema: {
        type: 'object',
        properties: {
          untitledSingle: { type: 'string', description: 'Select one option', enum: ['option1', 'option2', 'option3'] },
          titledSingle: {
            type: 'string',
            description: 'Select one option with titles',
            oneOf: [
              { const: 'value1', title: 'First Option' },
              { const: 'value2', title: 'Second Option' },
              { const: 'value3', title: 'Third Option' },
            ],
          },
          legacyEnum: {
            type: 'string',
            description: 'Select one option (legacy)',
            enum: ['opt1', 'opt2', 'opt3'],
            enumNames: ['Option One', 'Option Two', 'Option Three'],
          },
          untitledMulti: {
            type: 'array',
            description: 'Select multiple options',
            minItems: 1,
            maxItems: 3,
            items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
          },
          titledMulti: {
            type: 'array',
            description: 'Select multiple options with titles',
            minItems: 1,
            maxItems: 3,
            items: {
              anyOf: [
                { const: 'value1', title: 'First Choice' },
                { const: 'value2', title: 'Second Choice' },
                { const: 'value3', title: 'Third Choice' },
              ],
            },
          },
        },
        required: [],
      },
    });
    return text(`Elicitation completed: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`);
  });
}

/** The client's capabilities: the request's envelope (modern) or what `initialize` declared (legacy). */
function declaredCapabilities(server: McpServer, ctx: ServerContext): ClientCapabilities {
  const envelope: Record<string, unknown> = ctx.mcpReq.envelope ?? {};
  const fromEnvelope = envelope['io.modelcontextprotocol/clientCapabilities'];
  if (typeof fromEnvelope === 'object' && fromEnvelope !== null) return fromEnvelope;
  return server.server.getClientCapabilities() ?? {};
}

type StateCodec = ReturnType<typeof createRequestStateCodec<{ step: string }>>;

/** Multi round-trip tools (SEP-2322), written once for both eras. */
function registerInputRequiredTools(server: McpServer, codec: StateCodec): void {
  server.registerTool('test_input_required_result_elicitation', { description: 'Asks for a name, then greets' }, (ctx) => {
    const name = acceptedField(ctx.mcpReq.inputResponses, 'user_name', 'name');
    if (typeof name !== 'string') {
      return inputRequired({ inputRequests: { user_name: elicitString('What is your name?', 'name') } });
    }
    return text(`Hello, ${name}!`);
  });
  server.registerTool('test_input_required_result_sampling', { description: 'Asks the client model a question' }, (ctx) => {
    const answer = samplingText(ctx.mcpReq.inputResponses, 'capital_question');
    if (answer === undefined) {
      return inputRequired({
        inputRequests: {
          capital_question: inputRequired.createMessage({
            messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }],
            maxTokens: 100,
          }),
        },
      });
    }
    return text(`Sampling response: ${answer}`);
  });
  server.registerTool('test_input_required_result_list_roots', { description: 'Asks for the client roots' }, (ctx) => {
    const roots = rootUris(ctx.mcpReq.inputResponses, 'client_roots');
    if (roots === undefined) return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
    return text(`Roots: ${roots.join(', ')}`);
  });
  server.registerTool('test_input_required_result_request_state', { description: 'Round-trips requestState' }, async (ctx) => {
    const confirmed = acceptedField(ctx.mcpReq.inputResponses, 'confirm', 'ok');
    const saved = ctx.mcpReq.requestState<{ step: string }>();
    if (confirmed === undefined || saved?.step !== 'confirm') {
      return inputRequired({
        inputRequests: { confirm: elicitString('Please confirm', 'ok', 'boolean') },
        requestState: await codec.mint({ step: 'confirm' }),
      });
    }
    return text(`state-ok: confirmed=${JSON.stringify(confirmed)}`);
  });
  server.registerTool('test_input_required_result_tampered_state', { description: 'Rejects a tampered requestState' }, async (ctx) => {
    const saved = ctx.mcpReq.requestState<{ step: string }>();
    if (saved?.step !== 'tamper-check') {
      return inputRequired({
        inputRequests: { confirm: elicitString('Please confirm', 'ok', 'boolean') },
        requestState: await codec.mint({ step: 'tamper-check' }),
      });
    }
    return text('state verified');
  });
  server.registerTool('test_input_required_result_multiple_inputs', { description: 'Asks for three inputs at once' }, async (ctx) => {
    const responses = ctx.mcpReq.inputResponses;
    const name = acceptedField(responses, 'user_name', 'name');
    const greeting = samplingText(responses, 'greeting');
    const roots = rootUris(responses, 'client_roots');
    if (typeof name === 'string' && greeting !== undefined && roots !== undefined) {
      return text(`name=${name}; greeting=${greeting}; roots=${roots.join(', ')}`);
    }
    const inputRequests: InputRequests = {
      user_name: elicitString('What is your name?', 'name'),
      greeting: inputRequired.createMessage({
        messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }],
        maxTokens: 50,
      }),
      client_roots: inputRequired.listRoots(),
    };
    return inputRequired({ inputRequests, requestState: await codec.mint({ step: 'multiple' }) });
  });
  server.registerTool('test_input_required_result_multi_round', { description: 'Two elicitation rounds' }, async (ctx) => {
    const responses = ctx.mcpReq.inputResponses;
    const saved = ctx.mcpReq.requestState<{ step: string }>();
    const color = acceptedField(responses, 'step2', 'color');
    if (saved?.step === 'step2' && typeof color === 'string') return text(`Done: favorite color ${color}`);
    const name = acceptedField(responses, 'step1', 'name');
    if ((saved?.step === 'step1' && typeof name === 'string') || saved?.step === 'step2') {
      return inputRequired({
        inputRequests: { step2: elicitString('Step 2: What is your favorite color?', 'color') },
        requestState: await codec.mint({ step: 'step2' }),
      });
    }
    return inputRequired({
      inputRequests: { step1: elicitString('Step 1: What is your name?', 'name') },
      requestState: await codec.mint({ step: 'step1' }),
    });
  });
  server.registerTool('test_input_required_result_capabilities', { description: 'Asks only for what the client declared' }, (ctx) => {
    const responses = ctx.mcpReq.inputResponses;
    if (responses !== undefined && Object.keys(responses).length > 0) return text(`received ${Object.keys(responses).join(', ')}`);
    const declared = declaredCapabilities(server, ctx);
    const inputRequests: InputRequests = {};
    if (declared.sampling !== undefined) {
      inputRequests.sample = inputRequired.createMessage({
        messages: [{ role: 'user', content: { type: 'text', text: 'Say hello' } }],
        maxTokens: 20,
      });
    }
    if (declared.elicitation !== undefined) inputRequests.ask = elicitString('What is your name?', 'name');
    if (declared.roots !== undefined) inputRequests.roots = inputRequired.listRoots();
    if (Object.keys(inputRequests).length === 0) return text('no client capability to ask with');
    return inputRequired({ inputRequests });
  });
  server.registerTool('test_missing_capability', { description: 'Needs the sampling capability' }, (ctx) => {
    const answer = samplingText(ctx.mcpReq.inputResponses, 'needs_sampling');
    if (answer !== undefined) return text(`sampled: ${answer}`);
    return inputRequired({
      inputRequests: {
        needs_sampling: inputRequired.createMessage({
          messages: [{ role: 'user', content: { type: 'text', text: 'ping' } }],
          maxTokens: 10,
        }),
      },
    });
  });
  server.registerTool('test_streaming_elicitation', { description: 'Asks for input while streaming' }, async (ctx) => {
    const answer = acceptedField(ctx.mcpReq.inputResponses, 'answer', 'answer');
    if (typeof answer === 'string') return text(`answer=${answer}`);
    const progressToken = ctx.mcpReq._meta?.progressToken;
    if (progressToken !== undefined) {
      await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress: 1, total: 2 } });
    }
    return inputRequired({ inputRequests: { answer: elicitString('Your answer?', 'answer') } });
  });
}

function registerListChangeTools(server: McpServer, state: FixtureState, toolsChanged: () => void, promptsChanged: () => void): void {
  const addTool = (index: number): void => {
    server.registerTool(`test_added_tool_${index}`, { description: `Tool added at runtime (#${index})` }, () =>
      text(`added tool ${index}`),
    );
  };
  const addPrompt = (index: number): void => {
    server.registerPrompt(`test_added_prompt_${index}`, { description: `Prompt added at runtime (#${index})` }, () => ({
      messages: [{ role: 'user', content: { type: 'text', text: `added prompt ${index}` } }],
    }));
  };
  for (let index = 1; index <= state.addedTools; index += 1) addTool(index);
  for (let index = 1; index <= state.addedPrompts; index += 1) addPrompt(index);

  server.registerTool('test_trigger_tool_change', { description: 'Adds a tool (tools/list_changed)' }, () => {
    state.addedTools += 1;
    addTool(state.addedTools);
    toolsChanged();
    return text(`added test_added_tool_${state.addedTools}`);
  });
  server.registerTool('test_trigger_prompt_change', { description: 'Adds a prompt (prompts/list_changed)' }, () => {
    state.addedPrompts += 1;
    addPrompt(state.addedPrompts);
    promptsChanged();
    return text(`added test_added_prompt_${state.addedPrompts}`);
  });
}

function registerResources(server: McpServer, state: FixtureState): void {
  server.registerResource(
    'static-text',
    'test://static-text',
    { description: 'A static text resource', mimeType: 'text/plain' },
    (uri) => ({
      contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }],
    }),
  );
  server.registerResource(
    'static-binary',
    'test://static-binary',
    { description: 'A static binary resource (PNG)', mimeType: 'image/png' },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG_BASE64 }] }),
  );
  server.registerResource(
    'watched-resource',
    WATCHED_RESOURCE_URI,
    { description: 'A resource that can be subscribed to', mimeType: 'text/plain' },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Watched resource content' }] }),
  );
  server.registerResource(
    'template-data',
    new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { description: 'A templated resource', mimeType: 'application/json' },
    (uri, variables) => {
      const id = String(variables.id);
      return {
        contents: [
          {
            uri: uri.href,
            mimeType: 'application/json',
            text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
          },
        ],
      };
    },
  );
  server.server.setRequestHandler('resources/subscribe', (request) => {
    state.subscriptions.add(request.params.uri);
    return {};
  });
  server.server.setRequestHandler('resources/unsubscribe', (request) => {
    state.subscriptions.delete(request.params.uri);
    return {};
  });
}

function registerPrompts(server: McpServer, _state: FixtureState): void {
  server.registerPrompt('test_simple_prompt', { description: 'A prompt without arguments' }, () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  }));
  server.registerPrompt(
    'test_prompt_with_arguments',
    {
      description: 'A prompt with two arguments',
      argsSchema: {
        arg1: completable(z.string().describe('First test argument'), (value) =>
          ['paris', 'park', 'party', 'test-value'].filter((candidate) => candidate.startsWith(value)),
        ),
        arg2: z.string().describe('Second test argument'),
      },
    },
    ({ arg1, arg2 }) => ({
      messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }],
    }),
  );
  server.registerPrompt(
    'test_prompt_with_embedded_resource',
    { description: 'A prompt embedding a resource', argsSchema: { resourceUri: z.string().describe('URI of the resource to embed') } },
    ({ resourceUri }) => ({
      messages: [
        {
          role: 'user',
          content: {
            type: 'resource',
            resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
          },
        },
        { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
      ],
    }),
  );
  server.registerPrompt('test_prompt_with_image', { description: 'A prompt with an image' }, () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG_BASE64, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  }));
  server.registerPrompt('test_input_required_result_prompt', { description: 'A prompt that needs elicited context' }, (ctx) => {
    const context = acceptedField(ctx.mcpReq.inputResponses, 'user_context', 'context');
    if (typeof context !== 'string') {
      return inputRequired({
        inputRequests: { user_context: elicitString('What context should the prompt use?', 'context') },
      });
    }
    return { messages: [{ role: 'user', content: { type: 'text', text: `Use this context: ${context}` } }] };
  });
}
