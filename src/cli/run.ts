import { checkConfigCommand } from './checkConfig.js';
import { claimCommand } from './claim.js';
import { type CliContext, CliFailure, type Command, redact, UsageError } from './context.js';
import { devUpstreamCommand } from './devUpstream.js';
import { keysCommand } from './keys.js';

const commands: (Command & { subcommands?: Command[] })[] = [
  keysCommand,
  checkConfigCommand,
  claimCommand,
  devUpstreamCommand,
];

/** Exit statuses: success, the command failed, the command line is wrong. */
export const exitCodes = { ok: 0, failure: 1, usage: 2 } as const;

function topHelp(): string {
  const rows = commands.flatMap((command) =>
    command.subcommands
      ? command.subcommands.map((sub): [string, string] => [`${command.name} ${sub.name}`, sub.summary])
      : [[command.name, command.summary] as [string, string]],
  );
  return `token-broker: operator commands for the token-broker sidecar

Usage: token-broker <command> [options]

Commands:
${rows.map(([name, summary]) => `  ${name.padEnd(16)}${summary}`).join('\n')}

Options:
  -h, --help      show this help; "token-broker <command> --help" shows a command's options
  -v, --version   print the version

Exit status: 0 success, 1 failure, 2 usage error.`;
}

/** Help flags count only before a "--", after which everything is an argument. */
function wantsHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((arg) => arg === '--help' || arg === '-h');
}

/** Follows `keys rotate ...` down to the command that runs, with the arguments left for it. */
function resolveCommand(argv: string[]): { command: Command; path: string; args: string[] } | undefined {
  const top = commands.find((command) => command.name === argv[0]);
  if (!top) return undefined;
  const sub = top.subcommands?.find((command) => command.name === argv[1]);
  if (sub) return { command: sub, path: `${top.name} ${sub.name}`, args: argv.slice(2) };
  return { command: top, path: top.name, args: argv.slice(1) };
}

/**
 * Runs one command line and resolves to the exit status. Errors go to `ctx.stderr` as one line
 * (a configuration check lists one problem per line), scrubbed of every secret the command saw.
 */
export async function runCli(argv: string[], ctx: CliContext, version: string): Promise<number> {
  const fail = (message: string) => ctx.stderr(`${redact(message, ctx.secrets)}\n`);
  const [first] = argv;
  if (first === undefined) {
    fail(`token-broker: missing command\n\n${topHelp()}`);
    return exitCodes.usage;
  }
  if (first === '--version' || first === '-v') {
    ctx.stdout(`${version}\n`);
    return exitCodes.ok;
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    const target = first === 'help' ? resolveCommand(argv.slice(1)) : undefined;
    ctx.stdout(`${target ? target.command.help : topHelp()}\n`);
    return exitCodes.ok;
  }
  const resolved = resolveCommand(argv);
  if (!resolved) {
    fail(`token-broker: unknown command "${first}" (see token-broker --help)`);
    return exitCodes.usage;
  }
  const { command, path, args } = resolved;
  if (wantsHelp(args)) {
    ctx.stdout(`${command.help}\n`);
    return exitCodes.ok;
  }
  try {
    return await command.run(args, ctx);
  } catch (error) {
    if (error instanceof UsageError) {
      fail(`token-broker ${path}: ${error.message} (see token-broker ${path} --help)`);
      return exitCodes.usage;
    }
    if (error instanceof CliFailure) {
      fail(`token-broker ${path}: ${error.message}`);
      return exitCodes.failure;
    }
    const message = error instanceof Error ? error.message : String(error);
    fail(`token-broker ${path}: ${message.split('\n')[0] ?? message}`);
    return exitCodes.failure;
  }
}
