// Runs the connector role's case table through an IAM policy simulator (@cloud-copilot/iam-simulate,
// strict mode) and compares each decision with what the table expects.
//
// Input: the directory tests/iam/resolve.py wrote (policies.json: the role's two documents, the
// user's boundary and the fleet's reader role's policy and trust policy per template and scenario;
// cases.json: each case with its kind of principal and one request per template and scenario). A
// case's principal is the role (its two documents, no boundary), the connector user (any policy at
// all, capped by the boundary: what the boundary lets through), the reader role (its policy), a
// service principal invoking the function (its resource policy, from AWS::Lambda::Permission), or a
// principal of another account assuming the reader role (its own account allows it anything: the
// reader role's trust policy, the resource policy of sts:AssumeRole, decides). Strict mode
// drops context keys the Service Authorization Reference does not list for the action, so a grant
// resting on such a key is refused here as IAM may refuse it. A case may name documented keys the
// simulator drops anyway (`unsafe_keeps`: kms:EncryptionContext:SecretARN at 0.1.173); only then,
// and only if nothing else was dropped, is it run without that filtering.
//
// Prints one line per case, the known failures (cases marked known_failure that still fail; one
// that passes is a failure: take the mark off), and a closing line `N passed, M failed`. Exits 1
// on any failure.
//
// Usage: node simulate.mjs DIR

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'

const ANYTHING = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] }

// A KMS key is usable only if its key policy allows it: the usual one delegates to IAM in the
// account of the role (docs/security.md: a customer managed key's policy must allow the role).
function keyPolicy(principal) {
  const [, partition, , , account] = principal.split(':')
  return {
    Version: '2012-10-17',
    Statement: [{ Sid: 'EnableIamPolicies', Effect: 'Allow', Principal: { AWS: `arn:${partition}:iam::${account}:root` },
      Action: 'kms:*', Resource: '*' }]
  }
}

// The identity policies of each kind of principal (tests/iam/resolve.py `kind`).
function identityPolicies(kind, docs) {
  switch (kind) {
    case 'role':
      return [{ name: 'role', policy: docs.role }, { name: 'role-secrets', policy: docs['role secrets'] }]
    case 'reader':
      return [{ name: 'reader', policy: docs.reader }]
    // The connector user (capped by the boundary) and a principal of another account (its own
    // account's policies are not ours to model: the resource's policy decides).
    case 'user':
    case 'outside':
      return [{ name: 'anything', policy: ANYTHING }]
    // A service principal (Secrets Manager rotating, EventBridge's rule) holds no identity policy.
    case 'service':
      return []
    default:
      throw new Error(`unknown kind of principal ${kind}`)
  }
}

// The resource's own policy: the function's (service principals), the reader role's trust policy
// (a principal of another account assuming it), or a KMS key's (the usual one, delegating to IAM).
function resourcePolicy(run, docs, kind) {
  if (kind === 'service') return docs.function
  if (kind === 'outside') return docs['reader trust']
  return run.action.startsWith('kms:') ? keyPolicy(run.principal) : undefined
}

function simulation(run, docs, kind) {
  return {
    request: {
      principal: run.principal,
      action: run.action,
      resource: { resource: run.resource, accountId: run.accountId },
      contextVariables: run.context
    },
    identityPolicies: identityPolicies(kind, docs),
    permissionBoundaryPolicies: kind === 'user' ? [{ name: 'boundary', policy: docs.boundary }] : undefined,
    resourcePolicy: resourcePolicy(run, docs, kind),
    serviceControlPolicies: [],
    resourceControlPolicies: []
  }
}

// runUnsafeSimulation loads a resource policy without a name and then reads it: give it one.
function named(sim) {
  if (!sim.resourcePolicy) return sim
  return { ...sim, resourcePolicy: { __validated: true, policyDocument: sim.resourcePolicy, metadata: { name: 'key policy' } } }
}

async function decide(run, docs, testCase) {
  const sim = simulation(run, docs, testCase.kind)
  const result = await runSimulation(sim, { simulationMode: 'Strict' })
  if (result.resultType === 'error') throw new Error(`${testCase.name}: ${JSON.stringify(result.errors)}`)
  const dropped = result.result?.ignoredContextKeys ?? []
  const keeps = testCase.unsafe_keeps ?? []
  if (keeps.length && dropped.length && dropped.every((k) => keeps.includes(k))) {
    return { decision: runUnsafeSimulation(named(sim), {}), dropped: [], kept: dropped }
  }
  return { decision: result.overallResult, dropped, kept: [] }
}

function verdict(decision) {
  return decision === 'Allowed' ? 'Allowed' : 'Denied'
}

async function runCase(testCase, policies) {
  const misses = []
  const notes = new Set()
  for (const run of testCase.runs) {
    const docs = policies[run.template][run.scenario]
    const { decision, dropped, kept } = await decide(run, docs, testCase)
    dropped.forEach((k) => notes.add(`simulator dropped ${k}`))
    kept.forEach((k) => notes.add(`kept ${k} (unsafe)`))
    if (verdict(decision) !== testCase.expect) misses.push(`${run.template} / ${run.scenario}: ${decision}`)
  }
  return { misses, notes: [...notes] }
}

function line(status, testCase, detail) {
  const run = testCase.runs[0]
  return `${status.padEnd(7)} ${testCase.name} — ${run.action} → expect ${testCase.expect} (${testCase.runs.length} runs)${detail}`
}

async function main(dir) {
  const policies = JSON.parse(readFileSync(join(dir, 'policies.json'), 'utf8'))
  const cases = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8'))
  let passed = 0
  let failed = 0
  const known = []
  for (const testCase of cases) {
    const { misses, notes } = await runCase(testCase, policies)
    const noteText = notes.length ? ` [${notes.join('; ')}]` : ''
    if (testCase.known_failure) {
      // Strict: every run must still fail; a known failure that passes anywhere is news.
      if (misses.length === testCase.runs.length) {
        known.push(testCase)
        console.log(line('KNOWN', testCase, ` — ${testCase.known_failure}${noteText}`))
      } else {
        failed++
        console.log(line('FAIL', testCase, ` — marked known_failure but passes in ${testCase.runs.length - misses.length} run(s): take the mark off`))
      }
    } else if (misses.length) {
      failed++
      console.log(line('FAIL', testCase, ` — ${testCase.why}${noteText}\n        got ${misses.join('\n        got ')}`))
    } else {
      passed++
      console.log(line('PASS', testCase, noteText))
    }
  }
  console.log(`${known.length} known failures (${known.reduce((n, c) => n + c.runs.length, 0)} runs), not counted: ${known.map((c) => c.name).join('; ')}`)
  console.log(`${passed} passed, ${failed} failed`)
  return failed === 0 ? 0 : 1
}

if (process.argv.length !== 3) {
  console.error('usage: node simulate.mjs DIR (written by tests/iam/resolve.py)')
  process.exit(2)
}
process.exitCode = await main(process.argv[2])
