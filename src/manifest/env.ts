/**
 * Environment in the manifest, with docker compose's semantics:
 *
 * - Interpolation of `${VAR}`, `$VAR`, `${VAR:-default}` (unset or empty), `${VAR-default}`
 *   (unset), `${VAR:?message}` / `${VAR?message}` (an error), `$$` for a literal `$`, in every
 *   string value (not in keys), from the environment `captree` runs in, then a `.env` file
 *   beside the manifest for what the environment lacks.
 * - `envFile:` on a process child: KEY=VALUE lines (`#` comments, blank lines, optional
 *   `export `, single or double quotes) merged under its `env:`, which wins.
 */
import { readFileSync } from 'node:fs';

export type Lookup = (name: string) => string | undefined;

/** The interpolated text, or the error message of a `${VAR:?…}` or a malformed reference. */
export function interpolate(text: string, lookup: Lookup): { value: string } | { error: string } {
  if (!text.includes('$')) return { value: text };
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch !== '$') {
      out += ch;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i++;
      continue;
    }
    if (next === '{') {
      const end = text.indexOf('}', i + 2);
      if (end < 0) return { error: `unterminated \${ in '${text}'` };
      const body = text.slice(i + 2, end);
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?$/s.exec(body);
      if (!m) return { error: `\${${body}}: expected \${NAME}, \${NAME:-default} or \${NAME:?message}` };
      const [, name, op, arg = ''] = m;
      const value = lookup(name!);
      const missing = op?.startsWith(':') ? value === undefined || value === '' : value === undefined;
      if (op === ':-' || op === '-') out += missing ? arg : value;
      else if (op === ':?' || op === '?') {
        if (missing) return { error: `\${${name}} is not set${arg ? `: ${arg}` : ''}` };
        out += value;
      } else out += value ?? '';
      i = end;
      continue;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1));
    if (m) {
      out += lookup(m[0]) ?? '';
      i += m[0].length;
    } else out += '$';
  }
  return { value: out };
}

/** KEY=VALUE lines; errors name the line. */
export function parseEnvFile(text: string): { vars: Record<string, string>; errors: string[] } {
  const vars: Record<string, string> = {};
  const errors: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) {
      errors.push(`line ${i + 1}: expected NAME=value, got '${line}'`);
      return;
    }
    let value = m[2]!;
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) {
      value = value.slice(1, -1);
      if (quote === '"') value = value.replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
    } else value = value.replace(/\s+#.*$/, '');
    vars[m[1]!] = value;
  });
  return { vars, errors };
}

/** Reads an env file: its variables, or why not. */
export function readEnvFile(file: string): { vars: Record<string, string> } | { error: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { error: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  const { vars, errors } = parseEnvFile(text);
  return errors.length > 0 ? { error: `${file} ${errors.join('; ')}` } : { vars };
}

/** The environment interpolation reads: captree's own, then `.env` beside the manifest. */
export function interpolationLookup(env: NodeJS.ProcessEnv, dotEnvFile: string): Lookup {
  let dotEnv: Record<string, string> | null = null;
  return (name) => {
    if (env[name] !== undefined) return env[name];
    if (dotEnv === null) {
      const read = readEnvFile(dotEnvFile);
      dotEnv = 'vars' in read ? read.vars : {};
    }
    return dotEnv[name];
  };
}
