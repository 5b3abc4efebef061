// Local OpenID Provider for Customs' end-to-end sign-in tests. Never deployed.
//
// Started by the `oidc_idp` fixture (tests/e2e/conftest.py), which sets:
//   OIDC_PORT          port on 127.0.0.1 (default 9000); the issuer is http://127.0.0.1:<port>
//   RP_BASE            Customs' live server URL; the client's redirect URI hangs off it
//   OIDC_JWKS_FILE     JSON {"keys": [private RSA JWK]}: the signing keys, fixed so tests can verify
//   OIDC_FOREIGN_JWK_FILE  JSON private RSA JWK that is NOT published, for the foreign-key mode
//   OIDC_CONFORM       "1": claims only in userinfo (conformIdTokenClaims); default: in the ID token too
//
// Malicious answers for negative tests, switched at run time by POST /__test__/mode with the mode
// name as the body (plain text, or JSON {"mode": ...}); GET tells the current mode; "normal" resets.
import { readFileSync } from 'node:fs';

import { SignJWT, UnsecuredJWT, base64url, decodeJwt, decodeProtectedHeader, importJWK } from 'jose';
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT ?? 9000);
const issuer = `http://127.0.0.1:${port}`;
const rp = (process.env.RP_BASE ?? 'http://127.0.0.1:8001').replace(/\/$/, '');
const readJson = (name) => JSON.parse(readFileSync(process.env[name], 'utf8'));
const jwks = readJson('OIDC_JWKS_FILE');
const foreignJwk = readJson('OIDC_FOREIGN_JWK_FILE');

const people = {
  alice: { email: 'alice@example.test', groups: ['g-admins', 'g-staff'] },
  bob: { email: 'bob@example.test', groups: ['g-staff'] },
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'customs',
    client_secret: 'customs-test-secret',
    redirect_uris: [`${rp}/accounts/oidc/localidp/login/callback/`],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    // The library's default is client_secret_basic; Customs (allauth) is configured for _post.
    token_endpoint_auth_method: 'client_secret_post',
  }],
  // PKCE stays optional for this confidential client (the library default) and S256 is offered.
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  conformIdTokenClaims: ['1', 'true'].includes(process.env.OIDC_CONFORM ?? ''),
  features: { devInteractions: { enabled: true } }, // any password; the login name becomes `sub`
  jwks,
  cookies: { keys: ['customs-e2e-test-only-cookie-key'] },
  async findAccount(ctx, id) {
    const person = people[id] ?? { email: `${id}@example.test`, groups: [] };
    return {
      accountId: id,
      claims: async () => ({ sub: id, email_verified: true, preferred_username: id, name: id, ...person }),
    };
  },
});

const signingKey = await importJWK(jwks.keys[0], 'RS256');
const foreignKey = await importJWK(foreignJwk, 'RS256');

async function sign(payload, header, key) {
  return new SignJWT(payload).setProtectedHeader(header).sign(key);
}

// Each mode rewrites the ID token of a token response; every result is a real JWT.
const idTokenModes = {
  'alg-none': async (payload) => new UnsecuredJWT(payload).encode(),
  // Keeps the published kid, so only the signature check itself can reject it.
  'foreign-key': async (payload, header) => sign(payload, header, foreignKey),
  'other-issuer': async (payload, header) =>
    sign({ ...payload, iss: 'http://127.0.0.1:9999' }, header, signingKey),
  'other-audience': async (payload, header) =>
    sign({ ...payload, aud: 'someone-else', azp: 'someone-else' }, header, signingKey),
  'wrong-nonce': async (payload, header) =>
    sign({ ...payload, nonce: 'not-the-nonce-you-sent' }, header, signingKey),
  // Signed honestly, then the payload gains an admin group: the signature no longer matches.
  'unsigned-groups': async (payload, header, token) => {
    const [head, , signature] = token.split('.');
    const body = base64url.encode(JSON.stringify({ ...payload, groups: ['g-admins'] }));
    return `${head}.${body}.${signature}`;
  },
};
const userinfoModes = {
  'userinfo-other-sub': (claims) => ({ ...claims, sub: 'mallory' }),
};
const modes = ['normal', ...Object.keys(idTokenModes), ...Object.keys(userinfoModes)];
let mode = 'normal';

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8').trim();
}

function parseMode(raw) {
  if (raw.startsWith('{')) return JSON.parse(raw).mode;
  if (raw.startsWith('mode=')) return new URLSearchParams(raw).get('mode');
  return raw;
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test__/mode') {
    if (ctx.method === 'POST') {
      const wanted = parseMode(await readBody(ctx.req));
      if (!modes.includes(wanted)) {
        ctx.status = 400;
        ctx.body = { error: `unknown mode ${JSON.stringify(wanted)}`, modes };
        return;
      }
      mode = wanted;
      console.log(`test mode: ${mode}`);
    }
    ctx.body = { mode, modes };
    return;
  }

  await next();

  if (mode === 'normal' || ctx.status !== 200 || typeof ctx.body !== 'object' || ctx.body === null) return;
  if (ctx.path === '/token' && idTokenModes[mode] && ctx.body.id_token) {
    const token = ctx.body.id_token;
    ctx.body = { ...ctx.body, id_token: await idTokenModes[mode](decodeJwt(token), decodeProtectedHeader(token), token) };
    console.log(`test mode ${mode}: rewrote the ID token`);
  } else if (ctx.path === '/me' && userinfoModes[mode]) {
    ctx.body = userinfoModes[mode](ctx.body);
    console.log(`test mode ${mode}: rewrote the userinfo response`);
  }
});

provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
