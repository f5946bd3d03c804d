/** The client commands: vip, real, apply, status, stats. */
import { Command, Option } from 'commander';
import { parseRealRef, parseVipKey, readConfigDocument, realKey, vipKey, canonicalMac, unusableMac, ValidationError } from '../model/index.js';
import type { ConfigDiff } from '../agent/desired.js';
import { ApiError, call, realPath, vipPath } from './client.js';
import { human, table } from './format.js';
import { common, hashOption, intArg, modeOption, nonEmpty, schedulerOption, UsageError } from './main.js';

type Opts = { socket: string; json?: boolean };

function out(opts: Opts, data: unknown, text: () => string): void {
  process.stdout.write(opts.json ? JSON.stringify(data, null, 2) + '\n' : text());
}

/** Canonical VIP key from the argument, or a usage error naming it. */
function vipArg(text: string): string {
  return vipKey(parseVipKey(text));
}

/** The real as its VIP stores it: `10.0.0.11:80` on a port-80 VIP is `10.0.0.11`, so "ok: ..." names it as `real list` does. */
function realArg(text: string, vip: string): { address: string; port?: number } {
  const r = parseRealRef(text);
  return r.port === parseVipKey(vip).port ? { address: r.address } : r;
}

/** `tcp`, `http:/healthz`, `none`. */
function healthArg(text: string, port: number | undefined, vipPort: number): Record<string, unknown> {
  let h: Record<string, unknown>;
  if (text === 'tcp' || text === 'none') h = { type: text };
  else if (text.startsWith('http:') && text.slice(5).startsWith('/')) h = { type: 'http', path: text.slice(5) };
  else throw new UsageError(`--health "${text}" must be tcp, http:PATH (e.g. http:/healthz) or none`);
  // Said in the flags' words: the agent's own refusal names the config path (vip.health.port).
  if (port !== undefined && h.type === 'none') throw new UsageError('--health-port needs a health check: give --health tcp or --health http:PATH too');
  if (port === undefined && h.type !== 'none' && vipPort === 0) throw new UsageError('a VIP on every port (port 0) needs --health-port N: the port its checks probe');
  if (port !== undefined) h.port = port;
  return h;
}

export function vipCommands(): Command {
  const vip = new Command('vip').description('add, remove and list virtual IPs');
  common(vip.command('add <vip>').description('add a VIP: ADDR:PORT/PROTO, IPv6 in brackets ([2001:db8::1]:443/tcp); port 0 = every port'), false)
    .addOption(modeOption()).addOption(hashOption()).addOption(schedulerOption())
    .option('--health <check>', 'health check: tcp, http:PATH or none', 'none')
    .option('--health-port <n>', 'port to probe (default: the real\'s port)', intArg(1, 65535))
    .action(async (text: string, o: Opts & { mode: string; hash: string; scheduler: string; health: string; healthPort?: number }) => {
      const { address, port, protocol } = parseVipKey(text);
      const body = { address, port, protocol, mode: o.mode, hash: o.hash, scheduler: o.scheduler, health: healthArg(o.health, o.healthPort, port), reals: [] };
      const r = await call<{ vip: string }>(o.socket, 'POST', '/v1/vips', body);
      process.stdout.write(`ok: added VIP ${r.vip}\n`);
    });
  common(vip.command('del <vip>').description('remove a VIP and its reals'), false)
    .action(async (text: string, o: Opts) => {
      const key = vipArg(text);
      await call(o.socket, 'DELETE', vipPath(key));
      process.stdout.write(`ok: removed VIP ${key}\n`);
    });
  common(vip.command('list').description('list VIPs'))
    .action(async (o: Opts) => {
      const vips = await call<Array<any>>(o.socket, 'GET', '/v1/vips');
      out(o, vips, () => table(['VIP', 'MODE', 'HASH', 'HEALTH', 'REALS', 'UP'],
        vips.map((v) => [v.key, v.mode, v.hash, v.health.type === 'http' ? `http:${v.health.path}` : v.health.type, v.reals.length, v.reals.filter((r: any) => r.health !== 'down' && !r.drain && r.weight > 0).length])));
    });
  return vip;
}

export function realCommands(): Command {
  const real = new Command('real').description('add, remove, change and list real servers of a VIP');
  common(real.command('list <vip>').description('list the reals of a VIP'))
    .action(async (text: string, o: Opts) => {
      const reals = await call<Array<any>>(o.socket, 'GET', `${vipPath(vipArg(text))}/reals`);
      out(o, reals, () => table(['REAL', 'WEIGHT', 'STATE', 'HEALTH', 'MAC'],
        reals.map((r) => [r.key, r.weight, r.drain ? 'drain' : r.weight === 0 ? 'weight 0' : 'active', r.health, r.mac ?? '-'])));
    });
  common(real.command('add <vip> <real>').description('add a real: ADDR or ADDR:PORT (own port only in nat mode)'), false)
    .option('--weight <n>', 'share of new flows, 0..65535', intArg(0, 65535), 1)
    .option('--mac <mac>', 'next-hop MAC for dsr (default: from the neighbour table)')
    .action(async (vipText: string, realText: string, o: Opts & { weight: number; mac?: string }) => {
      const vip = vipArg(vipText);
      const r = realArg(realText, vip);
      if (o.mac !== undefined && !canonicalMac(o.mac)) throw new UsageError(`--mac "${o.mac}" is not a MAC address like 02:00:00:00:00:01`);
      const why = o.mac === undefined ? null : unusableMac(canonicalMac(o.mac)!);
      if (why) throw new UsageError(`--mac ${o.mac} ${why}: a next hop must be one station's unicast MAC`);
      await call(o.socket, 'POST', `${vipPath(vip)}/reals`, { ...r, weight: o.weight, ...(o.mac ? { mac: o.mac } : {}) });
      process.stdout.write(`ok: added real ${realKey(r)} to ${vip}\n`);
    });
  common(real.command('del <vip> <real>').description('remove a real'), false)
    .action(async (vipText: string, realText: string, o: Opts) => {
      const vip = vipArg(vipText);
      const r = realKey(realArg(realText, vip));
      await call(o.socket, 'DELETE', realPath(vip, r));
      process.stdout.write(`ok: removed real ${r} from ${vip}\n`);
    });
  common(real.command('set <vip> <real>').description('change a real: --weight N, --drain (keep flows, take no new ones) or --undrain'), false)
    .option('--weight <n>', 'share of new flows, 0..65535', intArg(0, 65535))
    .addOption(new Option('--drain', 'keep existing flows, take no new ones').conflicts('undrain'))
    .addOption(new Option('--undrain', 'take new flows again'))
    .action(async (vipText: string, realText: string, o: Opts & { weight?: number; drain?: boolean; undrain?: boolean }) => {
      const vip = vipArg(vipText);
      const r = realKey(realArg(realText, vip));
      if (o.weight === undefined && !o.drain && !o.undrain) throw new UsageError('real set needs --weight N, --drain or --undrain');
      const change = { ...(o.weight !== undefined ? { weight: o.weight } : {}), ...(o.drain ? { drain: true } : o.undrain ? { drain: false } : {}) };
      await call(o.socket, 'PATCH', realPath(vip, r), change);
      process.stdout.write(`ok: ${r} of ${vip}: ${Object.entries(change).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
    });
  return real;
}

/** `: 1 added, 2 changed, l7 changed`: what apply did, in counts (`vip list` shows which). */
function describeDiff(d: ConfigDiff): string {
  const parts = [
    ...(d.added.length ? [`${d.added.length} added`] : []),
    ...(d.changed.length ? [`${d.changed.length} changed`] : []),
    ...(d.removed.length ? [`${d.removed.length} removed`] : []),
    ...(d.dataplane ? ['dataplane settings changed'] : []),
    ...(d.l7 ? ['l7 changed'] : []),
  ];
  return parts.length ? `: ${parts.join(', ')}` : '';
}

export function applyCommand(): Command {
  return common(new Command('apply').description('make the running state equal a config file (YAML or JSON)'), false)
    .requiredOption('-f, --file <file>', 'config file', nonEmpty)
    .action(async (o: Opts & { file: string }) => {
      const doc = readConfigDocument(o.file);
      if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ValidationError([{ path: o.file, message: 'must be a mapping with dataplane, vips and l7' }]);
      const r = await call<{ vips: number; changed?: boolean; diff?: ConfigDiff }>(o.socket, 'PUT', '/v1/config', doc);
      // As kubectl's "unchanged": a second apply of the same file must not read as a change made.
      if (r.changed === false) process.stdout.write(`ok: ${o.file} is the running state already (${r.vips} VIPs): nothing changed\n`);
      else process.stdout.write(`ok: applied ${o.file} (${r.vips} VIPs${r.diff ? describeDiff(r.diff) : ''})\n`);
    });
}

export function statusCommand(): Command {
  return common(new Command('status').description('data plane, program, counts and health summary'))
    .action(async (o: Opts) => {
      const s = await call<any>(o.socket, 'GET', '/v1/status');
      out(o, s, () => [
        `dataplane:  ${s.dataplane.kind}${s.dataplane.interface ? ` on ${s.dataplane.interface}` : ''}${s.dataplane.attachMode && s.dataplane.kind === 'xdp' ? ` (${s.dataplane.attachMode})` : ''}`,
        `reason:     ${s.dataplane.reason}`,
        ...(s.dataplane.programId !== undefined ? [`program id: ${s.dataplane.programId}`] : []),
        `agent:      pid ${s.pid}, since ${s.startedAt}, state in ${s.stateDir}`,
        `vips:       ${s.vips} (limit ${s.limits.maxVips})`,
        `reals:      ${s.reals} (limit ${s.limits.maxReals}): ${s.health.up} up, ${s.health.down} down, ${s.health.drained} drained`,
        `last sync:  ${s.lastSync ? `${s.lastSync.at}${s.lastSync.error ? ` FAILED: ${s.lastSync.error}` : ''}` : 'never'}`,
        ...(s.l7 ? [`l7 pool:    ${s.l7.running ? `running, pid ${s.l7.pid}` : 'NOT running (restarting)'}, config ${s.l7.config}${s.l7.restarts ? `, ${s.l7.restarts} restarts` : ''}`] : []),
        '',
      ].join('\n'));
    });
}

function statsRows(s: any): Array<Array<string | number>> {
  const rows: Array<Array<string | number>> = [];
  for (const v of s.vips) {
    rows.push([v.key, '', human(v.packets), human(v.bytes), human(v.newFlows), '']);
    for (const r of v.reals) rows.push(['', r.key, human(r.packets), human(r.bytes), human(r.newFlows), r.health ?? '-']);
  }
  return rows;
}

export function statsCommand(): Command {
  return common(new Command('stats').description('packets, bytes and new flows per VIP and per real, with health'))
    .option('--watch', 'refresh every --interval seconds until interrupted (with --json: one snapshot per line)')
    .option('--interval <s>', 'refresh interval for --watch', intArg(1, 3600), 1)
    .action(async (o: Opts & { watch?: boolean; interval: number }, cmd: Command) => {
      // Taken and ignored, it would let `stats --interval 5` look like it watches.
      if (!o.watch && cmd.getOptionValueSource('interval') === 'cli') throw new UsageError('--interval is the refresh interval of --watch: give --watch too');
      const show = (s: any) => {
        const g = Object.entries(s.global as Record<string, number>).filter(([, n]) => n > 0).map(([k, n]) => `${k}=${human(n)}`).join(' ');
        // --watch --json: one snapshot per line, so a script can read them as they come.
        if (o.watch && o.json) process.stdout.write(JSON.stringify(s) + '\n');
        else out(o, s, () => table(['VIP', 'REAL', 'PACKETS', 'BYTES', 'NEW FLOWS', 'HEALTH'], statsRows(s)) + (g ? `data plane: ${g}\n` : ''));
      };
      const get = () => call<any>(o.socket, 'GET', '/v1/stats');
      // The first snapshot must work: a wrong --socket or no agent is an error, exit 1.
      show(await get());
      if (!o.watch) return;
      // After that an agent restart (systemd, an upgrade) is an outage to wait out, said once on
      // stderr; the watch goes on when the agent answers again.
      let down = false;
      for (;;) {
        await new Promise((r) => setTimeout(r, o.interval * 1000));
        let s: any;
        try {
          s = await get();
        } catch (e) {
          if (!(e instanceof ApiError)) throw e;
          if (!down) process.stderr.write(`sluice: ${e.message}; still watching\n`);
          down = true;
          continue;
        }
        down = false;
        if (!o.json) process.stdout.write('\x1b[2J\x1b[H');
        show(s);
      }
    });
}
