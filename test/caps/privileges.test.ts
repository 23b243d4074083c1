/** Privileges held down the tree: the root holds the host's, a node naming none passes its parent's on, a child holds what it names. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  admit,
  allPrivileges,
  createTree,
  grantOf,
  type HostCapabilities,
  parsePrivilege,
  renegotiate,
} from '../../src/caps/index.ts';
import { codes, fullHost, rejected } from './fixtures.ts';

const rootHost: HostCapabilities = { ...fullHost, privileges: allPrivileges() };

function tree(host: HostCapabilities = rootHost) {
  const r = createTree({ name: 't', requires: { cpu: 1 } }, host);
  assert.ok(r.ok);
  return r.tree;
}

describe('privileges', () => {
  it('a child holds exactly what it names; the root of a root-run daemon holds everything', () => {
    const t = tree();
    assert.ok(grantOf(t, '/t')?.privileges.includes('sys_admin'));
    const r = admit(t, '/t', {
      name: 'web',
      requires: { privileges: ['net_bind_service', 'user:www-data'] },
    });
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual([...r.grant.privileges].sort(), ['net_bind_service', 'user:www-data']);
    const none = admit(t, '/t', { name: 'plain', requires: { privileges: [] } });
    assert.ok(none.ok);
    assert.deepEqual(none.grant.privileges, []);
  });

  it('a node naming none passes its parent’s on; one naming some bounds its subtree, user:* covers every user', () => {
    const t = tree();
    assert.ok(admit(t, '/t', { name: 'open' }).ok);
    assert.ok(admit(t, '/t/open', { name: 'a', requires: { privileges: ['root'] } }).ok);
    assert.ok(admit(t, '/t', { name: 'db', requires: { privileges: ['user:*'] } }).ok);
    assert.ok(admit(t, '/t/db', { name: 'pg', requires: { privileges: ['user:postgres'] } }).ok);
    const r = rejected(admit(t, '/t/db', { name: 'x', requires: { privileges: ['root', 'chown'] } }));
    assert.deepEqual(codes(r), ['privilege-not-held', 'privilege-not-held']);
    assert.match(r.reasons[0]!.message, /\/t\/db\/x requires privilege root, \/t\/db does not hold it/);
  });

  it('a daemon that is not root can hand out no privilege', () => {
    const t = tree({ ...fullHost });
    const r = rejected(admit(t, '/t', { name: 'web', requires: { privileges: ['net_bind_service'] } }));
    assert.deepEqual(codes(r), ['privilege-not-held']);
  });

  it('policy.never forbids a combination with privilege: labels', () => {
    const r0 = createTree(
      { name: 't', requires: { cpu: 1 }, policy: { never: [['privilege:root', 'net:host']] } },
      rootHost,
    );
    assert.ok(r0.ok);
    const r = rejected(admit(r0.tree, '/t', { name: 'x', requires: { privileges: ['root'] } }));
    assert.deepEqual(codes(r), ['invariant-never']);
    assert.ok(admit(r0.tree, '/t', { name: 'y', requires: { privileges: ['root'], net: 'none' } }).ok);
  });

  it('a node cannot give up a privilege its child holds', () => {
    const t = tree();
    assert.ok(admit(t, '/t', { name: 'n', requires: { privileges: ['chown', 'kill'] } }).ok);
    assert.ok(admit(t, '/t/n', { name: 'c', requires: { privileges: ['chown'] } }).ok);
    const r = rejected(renegotiate(t, '/t/n', { privileges: ['kill'] }));
    assert.deepEqual(codes(r), ['children-hold-quality']);
  });

  it('names: CAP_ prefixes and case are the kernel’s; a typo gets the nearest name', () => {
    assert.deepEqual(parsePrivilege('CAP_NET_BIND_SERVICE'), { ok: true, privilege: 'net_bind_service' });
    assert.deepEqual(parsePrivilege('user:0'), { ok: true, privilege: 'root' });
    const bad = parsePrivilege('net_bind_servce');
    assert.equal(bad.ok, false);
    assert.match(bad.ok ? '' : bad.message, /did you mean net_bind_service/);
    assert.equal(parsePrivilege('user:../x').ok, false);
  });
});
