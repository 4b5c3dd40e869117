import { z } from 'zod';

const name = z.string().min(1);
/** A file the playbook works on, by logical name (`env`, `config`). */
const fileName = z.string().regex(/^[a-z][a-z0-9-]*$/, 'use a lowercase name like `config`');

/** A value written into a file: a literal, or `{ var: NAME }` taken from the inventory's vars. */
export const ValueSchema = z.union([z.strictObject({ var: name }), z.unknown()]);

export const YamlSetSchema = z.strictObject({
  kind: z.literal('yaml.set'),
  file: fileName,
  /** Dotted key path of the subtree, e.g. `hsm.vault` (releases differ: `hsm.hashicorp.vault`). */
  path: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'use a dotted key path like `hsm.vault`'),
  value: ValueSchema,
  /** The path's parent may hold nothing else (one HSM kind: another one beside it is refused, never merged). */
  exclusive: z.boolean().default(false),
  /** The subtree becomes exactly the value: keys the value lacks are removed (default: a user's own keys stay). */
  exact: z.boolean().default(false),
});

export const EnvUnsetSchema = z.strictObject({
  kind: z.literal('env.unset'),
  file: fileName,
  /** Every `KEY=` line is removed, with or without `export`, quoted or not. */
  key: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'),
});

export const EnvSetSchema = z.strictObject({
  kind: z.literal('env.set'),
  file: fileName,
  /** The last `KEY=` assignment gets the value in place (earlier ones go), else `KEY=value` is appended. */
  key: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'),
  /** A string (quote numbers: "4"), or `{ var: NAME }` whose value is a string, number or boolean; one line only. */
  value: z.union([
    z.strictObject({ var: name }),
    z.string().refine((v) => !/[\r\n\0]/.test(v), 'a value with a line break cannot be one EnvironmentFile line'),
  ], { message: 'must be a string (quote numbers: "4") or { var: NAME }' }),
});

export const ServiceRestartSchema = z.strictObject({
  kind: z.literal('service.restart'),
  /** Defaults to the playbook's `service.unit`. */
  unit: name.optional(),
});

export const TaskSchema = z.discriminatedUnion('kind', [YamlSetSchema, EnvSetSchema, EnvUnsetSchema, ServiceRestartSchema]);
export type TaskSpec = z.infer<typeof TaskSchema>;
export type YamlSetSpec = z.infer<typeof YamlSetSchema>;
export type EnvUnsetSpec = z.infer<typeof EnvUnsetSchema>;
export type EnvSetSpec = z.infer<typeof EnvSetSchema>;

export const FileSpecSchema = z.strictObject({
  /** Default path on every node. */
  path: z.string().startsWith('/'),
  /** Inventory node key that overrides the path (`envFile`, `configFile`). */
  nodeOverride: z.enum(['envFile', 'configFile']).optional(),
  /** Take the path from an option inside a variable of another (env) file, when present. */
  fromEnv: z.strictObject({ file: fileName, key: name, option: z.string().startsWith('-') }).optional(),
});
export type FileSpec = z.infer<typeof FileSpecSchema>;

export const GateSchema = z.strictObject({
  /** A line containing this text (ANSI codes stripped), logged by the new process, passes the gate. */
  ready: name,
  /** A line matching any of these regular expressions (case-insensitive) fails the gate at once. */
  failOn: z.array(name).default([]),
  timeoutSeconds: z.number().positive().max(3600).default(120),
  /** `systemctl restart` can block forever (TimeoutStopSec=infinity); it is bounded by this. */
  restartTimeoutSeconds: z.number().positive().max(3600).default(60),
});
export type GateSpec = z.infer<typeof GateSchema>;

export const PhaseSchema = z.strictObject({
  name,
  description: z.string().optional(),
  /** Name of a boolean inventory var; the phase runs only when it is true. */
  when: name.optional(),
  tasks: z.array(TaskSchema).min(1),
});
export type PhaseSpec = z.infer<typeof PhaseSchema>;

export const PlaybookSchema = z.strictObject({
  version: z.literal('v1'),
  name,
  description: z.string().optional(),
  files: z.record(fileName, FileSpecSchema),
  service: z.strictObject({ unit: name }),
  gate: GateSchema,
  /** What redaction knows besides the inventory's secrets: keys whose values are secret. */
  secrets: z
    .strictObject({
      yamlKeys: z.array(name).default([]),
      envKeys: z.array(name).default([]),
      /** Regexes whose first capture group is a secret in a log line. */
      logPatterns: z.array(name).default([]),
    })
    .default({ yamlKeys: [], envKeys: [], logPatterns: [] }),
  phases: z.array(PhaseSchema).min(1),
});
export type Playbook = z.infer<typeof PlaybookSchema>;
