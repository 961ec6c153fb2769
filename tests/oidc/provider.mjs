// A real OpenID Connect provider for SAE's sign-in tests: panva's oidc-provider (OpenID
// Certified), not a mock of SAE's own client. Started by tests/oidc_server.py:
//
//   PORT=… CLIENT_ID=… CLIENT_SECRET=… REDIRECT_URIS=uri[,uri] node provider.mjs
//
// It listens on 127.0.0.1:PORT with issuer http://127.0.0.1:PORT, signs ID tokens with an RSA
// key drawn at start (published at /jwks), and knows the people of PEOPLE below; its sign-in
// page is oidc-provider's development form (a login, any password: the provider is not what
// these tests test). Prints "READY <issuer>" once it listens.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const redirectUris = (process.env.REDIRECT_URIS || '').split(',').filter(Boolean);
// The ID token's lifetime: a test sets it low to see an expired token refused.
const idTokenTtl = Number(process.env.ID_TOKEN_TTL || 3600);
// Claims from the ID token (most providers put groups there) or, when "userinfo", from the
// userinfo endpoint only (OIDC Core's default for the code flow).
const claimsIn = process.env.CLAIMS_IN || 'id_token';

const PEOPLE = {
  amartin: {
    name: 'Anne Martin',
    email: 'anne.martin@mairie.test',
    groups: ['sae-archivistes', 'lecteurs'],
  },
  bdurand: {
    name: 'Bruno Durand',
    email: 'bruno.durand@mairie.test',
    groups: ['depot-urbanisme', 'lecteurs'],
  },
  cpetit: { name: 'Claire Petit', email: 'claire.petit@mairie.test', groups: ['comptabilite'] },
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key-1', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  conformIdTokenClaims: claimsIn !== 'id_token',
  ttl: { IdToken: idTokenTtl, AccessToken: 600, AuthorizationCode: 60 },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    const person = PEOPLE[id] || { name: id, email: `${id}@ailleurs.test`, groups: [] };
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: person.name,
          email: person.email,
          email_verified: true,
          groups: person.groups,
        };
      },
    };
  },
});
provider.proxy = false;

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
