// A real OpenID provider for the tests: npm `oidc-provider` (a certified implementation) on
// 127.0.0.1 with one confidential test client, PKCE required, and test users whose
// `groups` claim grants roles in Portcullis through group rules.
//
// Used two ways:
//   import { startProvider } from './provider.mjs'   (Playwright fixtures)
//   node provider.mjs --redirect-uri URI [--post-logout-redirect-uri URI] [--port N]
//     prints one JSON line {"issuer": …} when ready and runs until stdin closes or SIGTERM.
//
// Every page it serves is its own plain HTML: the package's default pages load web fonts
// from the internet, and the tests must never reach beyond 127.0.0.1.
import Provider from 'oidc-provider';
import { createServer } from 'node:http';

export const CLIENT_ID = 'portcullis-test';
export const CLIENT_SECRET = 'a client secret only the tests know';

/// Test users. Passwords never contain the user name.
export const USERS = {
  alice: {
    password: 'correct horse battery staple',
    claims: {
      preferred_username: 'alice',
      email: 'alice@example.org',
      email_verified: true,
      name: 'Alice Approver',
      groups: ['portcullis-approvers', 'staff'],
    },
  },
  bob: {
    password: 'tr0ub4dor and three',
    claims: {
      preferred_username: 'bob',
      email: 'bob@example.org',
      email_verified: true,
      name: 'Bob Builder',
      groups: ['staff'],
    },
  },
};

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>`
    + '<style>body{font-family:sans-serif;max-width:28rem;margin:2rem auto}label,input,button{display:block;margin:.4rem 0}</style>'
    + `</head><body><main><h1>${esc(title)}</h1>${body}</main></body></html>`;
}

function loginForm(uid, clientName, error) {
  return page('Test identity provider', `
    <p>Sign in to continue to ${esc(clientName)}.</p>
    ${error ? `<p role="alert">${esc(error)}</p>` : ''}
    <form method="post" action="/interaction/${esc(uid)}/login">
      <label for="login">Username</label><input id="login" name="login" autocomplete="off">
      <label for="password">Password</label><input id="password" name="password" type="password">
      <button type="submit">Continue</button>
    </form>
    <form method="post" action="/interaction/${esc(uid)}/abort">
      <button type="submit">Cancel</button>
    </form>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10_000) break;
  }
  return new URLSearchParams(body);
}

/**
 * Starts the provider. `redirectUri` is the client's only redirect URI (the harness knows
 * the portal's port); `port` 0 picks a free one. Resolves to { issuer, port, stop }.
 */
export async function startProvider({ redirectUri, postLogoutRedirectUri, port = 0 }) {
  const server = createServer();
  await new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', ok);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      client_name: 'Portcullis',
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: postLogoutRedirectUri ? [postLogoutRedirectUri] : [],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    // Claims in the ID token itself (otherwise only `sub` is there).
    conformIdTokenClaims: false,
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    findAccount: async (ctx, id) => {
      const user = USERS[id];
      if (!user) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...user.claims }) };
    },
    // No consent screen: the test client is first-party; grant what it asks for.
    loadExistingGrant: async (ctx) => {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope(ctx.oidc.params.scope || 'openid');
      await grant.save();
      return grant;
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['portcullis test provider cookie key'] },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.body = page('Sign out of the test identity provider', `${form}
            <button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
            <button type="submit" form="op.logoutForm">No, stay signed in</button>`);
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.body = page('Signed out', '<p>You are signed out of the test identity provider.</p>');
        },
      },
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Test identity provider error', `<pre>${esc(JSON.stringify(out))}</pre>`);
    },
  });
  provider.on('server_error', (ctx, err) => console.error('provider server_error', err));

  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const m = req.url.match(/^\/interaction\/([\w-]+)(\/login|\/abort)?(\?.*)?$/);
    if (!m) return callback(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.uid !== m[1]) throw new Error('interaction mismatch');
      const clientName = 'Portcullis';
      if (req.method === 'GET' && !m[2]) {
        res.setHeader('content-type', 'text/html; charset=utf-8');
        return res.end(loginForm(details.uid, clientName));
      }
      if (req.method === 'POST' && m[2] === '/abort') {
        return await provider.interactionFinished(req, res, {
          error: 'access_denied',
          error_description: 'End-User aborted interaction',
        }, { mergeWithLastSubmission: false });
      }
      if (req.method === 'POST' && m[2] === '/login') {
        const form = await readForm(req);
        const login = form.get('login') || '';
        const user = USERS[login];
        if (!user || user.password !== form.get('password')) {
          res.statusCode = 200;
          res.setHeader('content-type', 'text/html; charset=utf-8');
          return res.end(loginForm(details.uid, clientName, 'Unknown user or wrong password.'));
        }
        return await provider.interactionFinished(req, res, { login: { accountId: login } }, {
          mergeWithLastSubmission: false,
        });
      }
      res.statusCode = 405;
      res.end();
    } catch (err) {
      res.statusCode = 400;
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(page('Test identity provider error', `<p>${esc(err.message)}</p>`));
    }
  });

  return {
    issuer,
    port: server.address().port,
    async stop() {
      server.closeAllConnections?.();
      await new Promise((ok) => server.close(ok));
    },
  };
}

// As a program: options from the command line, one JSON line on stdout when ready.
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const redirectUri = opt('--redirect-uri');
  if (!redirectUri) {
    console.error('usage: node provider.mjs --redirect-uri URI [--post-logout-redirect-uri URI] [--port N]');
    process.exit(2);
  }
  const running = await startProvider({
    redirectUri,
    postLogoutRedirectUri: opt('--post-logout-redirect-uri'),
    port: Number(opt('--port') || 0),
  });
  // A harness that stops reading must not kill the provider with EPIPE.
  process.stdout.on('error', () => {});
  process.stdout.write(`${JSON.stringify({ issuer: running.issuer })}\n`);
  const stop = async () => {
    await running.stop();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The harness holds stdin open; when it goes away, so does the provider.
  process.stdin.on('end', stop);
  process.stdin.resume();
}
