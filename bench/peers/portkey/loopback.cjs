// Preloaded into the Portkey peer (`node --require`): its start-server listens on every interface and has
// no flag for the address, and the bench suite binds everything to 127.0.0.1 only. A listen() call that
// names no host gets 127.0.0.1; calls that name one are left alone.
'use strict';
const net = require('net');

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    if (args.length === 1 || typeof args[1] === 'function') {
      args.splice(1, 0, '127.0.0.1');
    } else if (args[1] === undefined || args[1] === null || args[1] === '' || args[1] === '0.0.0.0' || args[1] === '::') {
      args[1] = '127.0.0.1';
    }
  } else if (args[0] && typeof args[0] === 'object' && args[0].path === undefined && !args[0].host) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
