/** `captree completion bash|zsh`: a completion script generated from the commands and their flags. */
import { type Command, UsageError } from '../cli.ts';

/** Filled by main.ts with every command, so the script always matches the CLI. */
export const completionTable: { commands: () => Promise<Command[]> } = { commands: async () => [] };

function bash(commands: Command[]): string {
  const cases = commands
    .map((c) => {
      const flags = [
        ...Object.entries(c.options)
          .filter(([, o]) => !o.hidden)
          .map(([n]) => `--${n}`),
        '--help',
      ];
      return `    ${c.name}) opts="${flags.join(' ')}" ;;`;
    })
    .join('\n');
  return `# captree bash completion: eval "$(captree completion bash)" (e.g. in ~/.bashrc)
_captree() {
  local cur=\${COMP_WORDS[COMP_CWORD]} opts
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${commands.map((c) => c.name).join(' ')} --help --version" -- "$cur"))
    return
  fi
  case "\${COMP_WORDS[1]}" in
${cases}
    *) opts="" ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -F _captree captree
`;
}

function zsh(commands: Command[]): string {
  const list = commands
    .map((c) => `    '${c.name}:${c.summary.replaceAll("'", "'\\''").replaceAll(':', '\\:')}'`)
    .join('\n');
  const cases = commands
    .map((c) => {
      const flags = Object.entries(c.options)
        .filter(([, o]) => !o.hidden)
        .map(
          ([n, o]) => `'--${n}[${(o.description ?? '').replaceAll("'", "'\\''").replaceAll(/[[\]]/g, '')}]'`,
        );
      return `    ${c.name}) _arguments ${[...flags, "'--help[show help]'", "'*:file:_files'"].join(' ')} ;;`;
    })
    .join('\n');
  return `#compdef captree
# captree zsh completion: eval "$(captree completion zsh)" (e.g. in ~/.zshrc, after compinit)
_captree() {
  local -a commands
  commands=(
${list}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  case "$words[2]" in
${cases}
  esac
}
compdef _captree captree
`;
}

export const completion: Command = {
  name: 'completion',
  summary: 'print a bash or zsh completion script',
  usage: 'captree completion bash|zsh',
  help: `
Prints a shell completion script for captree's commands and their options.

Example:
  eval "$(captree completion bash)"     # in ~/.bashrc
  eval "$(captree completion zsh)"      # in ~/.zshrc, after compinit`,
  options: {},
  positionals: [1, 1],
  async run({ positionals }, io) {
    const shell = positionals[0]!;
    if (shell !== 'bash' && shell !== 'zsh') throw new UsageError(`${shell}: expected bash or zsh`);
    const commands = await completionTable.commands();
    io.stdout.write(shell === 'bash' ? bash(commands) : zsh(commands));
    return 0;
  },
};
