// A WebRTC call through sipwall, for sbc/e2e's TestBrowserWebRTC.
//
// Query parameters: wss (wss://host:port of sipwall's WSS listener),
// domain (the SIP domain; default the host of wss), user and password
// (default alice / demo), target (default 1000, the demo PBX's echo),
// hold (ms the call stays up; default 4000), timeout (ms for the whole
// run; default 30000).
//
// The page registers, calls the target with audio only, keeps the call
// up, reads RTCPeerConnection.getStats(), hangs up and POSTs one JSON
// report to /report. Progress also goes to /event as it happens, so
// that a page that hangs still shows how far it got. Every JsSIP failure
// ends the run with a report saying what the browser saw.
'use strict';

(function () {
	const q = new URLSearchParams(location.search);
	const wss = q.get('wss') || '';
	const cfg = {
		wss: wss,
		domain: q.get('domain') || (wss ? new URL(wss).hostname : ''),
		user: q.get('user') || 'alice',
		password: q.get('password') || 'demo',
		target: q.get('target') || '1000',
		holdMs: Number(q.get('hold') || 4000),
		timeoutMs: Number(q.get('timeout') || 30000),
	};
	const t0 = performance.now();
	const report = {
		jssip: JsSIP.version,
		userAgent: navigator.userAgent,
		target: 'sip:' + cfg.target + '@' + cfg.domain,
		outcome: '',
		registered: false,
		register: null, // {status, reason} or {cause, status, reason}
		call: {
			progress: [], // provisional responses: "180 Ringing"
			accepted: false,
			confirmed: false,
			ended: null, // {originator, cause}
			failed: null, // {originator, cause, status, reason, warning}
		},
		pc: { states: [], candidates: [], errors: [] },
		sdp: { local: '', remote: '', answer: '' },
		stats: null, // after the hold, or when the call failed
		timeline: [], // packets received, once a second while up
		events: [],
		errors: [],
	};

	function elapsed() {
		return Math.round(performance.now() - t0);
	}

	function note(kind, detail) {
		const e = { t: elapsed(), kind: kind, detail: detail === undefined ? '' : detail };
		report.events.push(e);
		document.getElementById('state').textContent = kind;
		console.log('call.js ' + kind + ' ' + JSON.stringify(e.detail));
		fetch('/event', { method: 'POST', body: JSON.stringify(e) }).catch(function () {});
	}

	let ua = null;
	let session = null;
	let pc = null;
	let sent = false;

	async function finish(outcome) {
		if (sent) {
			return;
		}
		sent = true;
		report.outcome = outcome;
		note('finish', outcome);
		if (pc) {
			report.sdp.local = (pc.localDescription && pc.localDescription.sdp) || '';
			report.sdp.remote = (pc.remoteDescription && pc.remoteDescription.sdp) || '';
			if (!report.stats) {
				try {
					report.stats = await collectStats(pc);
				} catch (err) {
					report.errors.push('getStats: ' + err);
				}
			}
		}
		try {
			if (ua) {
				ua.stop();
			}
		} catch (err) {
			report.errors.push('ua.stop: ' + err);
		}
		report.elapsedMs = elapsed();
		document.title = 'done: ' + outcome;
		try {
			await fetch('/report', {
				method: 'POST',
				headers: { 'Content-Type': 'application/json' },
				body: JSON.stringify(report),
			});
		} catch (err) {
			console.log('call.js report not sent: ' + err);
		}
	}

	function pick(s, keys) {
		if (!s) {
			return null;
		}
		const o = {};
		for (const k of keys) {
			if (s[k] !== undefined) {
				o[k] = s[k];
			}
		}
		return o;
	}

	// collectStats gives what the test asserts on: audio received (and
	// its energy: the echo played out), audio sent, the transport's DTLS
	// and ICE state, and the selected candidate pair with its addresses.
	async function collectStats(peer) {
		const rep = await peer.getStats();
		const byId = new Map();
		rep.forEach(function (s) {
			byId.set(s.id, s);
		});
		const out = { inbound: null, outbound: null, transport: null, pair: null, local: null, remote: null, pairs: [] };
		rep.forEach(function (s) {
			if (s.type === 'inbound-rtp' && s.kind === 'audio') {
				out.inbound = pick(s, ['ssrc', 'packetsReceived', 'bytesReceived', 'headerBytesReceived', 'packetsLost',
					'packetsDiscarded', 'jitter', 'totalAudioEnergy', 'audioLevel', 'totalSamplesReceived',
					'concealedSamples', 'codecId', 'mid']);
				const codec = byId.get(s.codecId);
				if (codec) {
					out.inbound.codec = codec.mimeType + '/' + codec.clockRate + ' pt ' + codec.payloadType;
				}
			}
			if (s.type === 'outbound-rtp' && s.kind === 'audio') {
				out.outbound = pick(s, ['ssrc', 'packetsSent', 'bytesSent', 'headerBytesSent', 'codecId', 'mid']);
				const codec = byId.get(s.codecId);
				if (codec) {
					out.outbound.codec = codec.mimeType + '/' + codec.clockRate + ' pt ' + codec.payloadType;
				}
			}
			if (s.type === 'transport') {
				out.transport = pick(s, ['dtlsState', 'iceState', 'iceRole', 'dtlsRole', 'selectedCandidatePairId',
					'srtpCipher', 'dtlsCipher', 'tlsVersion', 'packetsSent', 'packetsReceived', 'bytesSent', 'bytesReceived']);
			}
			if (s.type === 'candidate-pair') {
				out.pairs.push(pick(s, ['id', 'state', 'nominated', 'localCandidateId', 'remoteCandidateId',
					'requestsSent', 'responsesReceived', 'requestsReceived', 'responsesSent', 'bytesSent', 'bytesReceived']));
			}
		});
		const pair = out.transport && byId.get(out.transport.selectedCandidatePairId);
		if (pair) {
			out.pair = pick(pair, ['state', 'nominated', 'bytesSent', 'bytesReceived', 'currentRoundTripTime']);
			out.local = pick(byId.get(pair.localCandidateId), ['address', 'port', 'protocol', 'candidateType']);
			out.remote = pick(byId.get(pair.remoteCandidateId), ['address', 'port', 'protocol', 'candidateType']);
		}
		return out;
	}

	function watch(peer) {
		pc = peer;
		const state = function (what) {
			return function () {
				const v = peer[what];
				report.pc.states.push({ t: elapsed(), [what]: v });
				note(what, v);
			};
		};
		peer.addEventListener('iceconnectionstatechange', state('iceConnectionState'));
		peer.addEventListener('connectionstatechange', state('connectionState'));
		peer.addEventListener('signalingstatechange', state('signalingState'));
		peer.addEventListener('icegatheringstatechange', state('iceGatheringState'));
		peer.addEventListener('icecandidate', function (e) {
			if (e.candidate) {
				report.pc.candidates.push(e.candidate.candidate);
			}
		});
		peer.addEventListener('icecandidateerror', function (e) {
			report.pc.errors.push(e.errorCode + ' ' + e.errorText + ' ' + (e.url || ''));
		});
		peer.addEventListener('track', function (e) {
			note('track', e.track.kind);
			const audio = document.getElementById('remote');
			audio.srcObject = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
			audio.play().catch(function (err) {
				report.errors.push('audio.play: ' + err);
			});
		});
	}

	async function hold() {
		for (let waited = 0; waited < cfg.holdMs && !sent; waited += 1000) {
			await new Promise(function (r) {
				setTimeout(r, Math.min(1000, cfg.holdMs - waited));
			});
			try {
				const s = await collectStats(pc);
				report.timeline.push({ t: elapsed(), received: s.inbound ? s.inbound.packetsReceived : 0,
					sent: s.outbound ? s.outbound.packetsSent : 0, dtls: s.transport ? s.transport.dtlsState : '' });
			} catch (err) {
				report.errors.push('getStats: ' + err);
			}
		}
		if (sent) {
			return;
		}
		report.stats = await collectStats(pc);
		note('hangup');
		session.terminate();
		// finish on 'ended'; this only bounds the wait for it.
		setTimeout(function () {
			finish('completed (no ended event after BYE)');
		}, 3000);
	}

	function call() {
		note('calling', report.target);
		const handlers = {
			peerconnection: function (e) {
				watch(e.peerconnection);
			},
			sending: function () {
				note('sending INVITE');
			},
			progress: function (e) {
				if (e.originator === 'remote' && e.response) {
					report.call.progress.push(e.response.status_code + ' ' + e.response.reason_phrase);
					note('progress', e.response.status_code + ' ' + e.response.reason_phrase);
				}
			},
			accepted: function (e) {
				report.call.accepted = true;
				if (e.response) {
					report.sdp.answer = e.response.body || '';
				}
				note('accepted');
			},
			confirmed: function () {
				report.call.confirmed = true;
				note('confirmed');
				hold().catch(function (err) {
					report.errors.push('hold: ' + err);
					finish('error while the call was up');
				});
			},
			ended: function (e) {
				report.call.ended = { originator: e.originator, cause: e.cause };
				note('ended', e.originator + ': ' + e.cause);
				finish(report.stats ? 'completed' : 'call ended early: ' + e.originator + ': ' + e.cause);
			},
			failed: function (e) {
				const m = e.message;
				report.call.failed = {
					originator: e.originator,
					cause: e.cause,
					status: m && m.status_code,
					reason: m && m.reason_phrase,
					warning: (m && typeof m.getHeader === 'function' && m.getHeader('Warning')) || '',
				};
				if (m && m.status_code >= 200 && m.status_code < 300 && !report.sdp.answer) {
					report.sdp.answer = m.body || '';
				}
				note('failed', report.call.failed);
				finish('call failed: ' + e.originator + ': ' + e.cause +
					(m && m.status_code ? ' (' + m.status_code + ' ' + m.reason_phrase + ')' : ''));
			},
			getusermediafailed: function (e) {
				report.errors.push('getUserMedia: ' + e);
			},
			'peerconnection:createofferfailed': function (e) {
				report.errors.push('createOffer: ' + e);
			},
			'peerconnection:setlocaldescriptionfailed': function (e) {
				report.errors.push('setLocalDescription: ' + e);
			},
			'peerconnection:setremotedescriptionfailed': function (e) {
				report.errors.push('setRemoteDescription: ' + e);
			},
		};
		session = ua.call(report.target, {
			eventHandlers: handlers,
			mediaConstraints: { audio: true, video: false },
			// No STUN or TURN server: nothing leaves the machine; host
			// candidates (loopback with --allow-loopback-in-peer-connection)
			// are enough against sipwall's ICE-lite.
			pcConfig: { iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' },
			rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false },
		});
	}

	window.addEventListener('error', function (e) {
		report.errors.push('page: ' + e.message);
	});
	setTimeout(function () {
		finish('timeout after ' + cfg.timeoutMs + ' ms (last event: ' +
			(report.events.length ? report.events[report.events.length - 1].kind : 'none') + ')');
	}, cfg.timeoutMs);

	try {
		JsSIP.debug.enable('JsSIP:*');
		const socket = new JsSIP.WebSocketInterface(cfg.wss);
		ua = new JsSIP.UA({
			sockets: [socket],
			uri: 'sip:' + cfg.user + '@' + cfg.domain,
			password: cfg.password,
			register: true,
			register_expires: 300,
			session_timers: false,
			user_agent: 'sipwall-e2e JsSIP ' + JsSIP.version,
		});
		ua.on('connected', function () {
			note('websocket connected');
		});
		ua.on('disconnected', function (e) {
			note('websocket disconnected', e && e.error ? 'error' : '');
		});
		ua.on('registered', function (e) {
			report.registered = true;
			report.register = { status: e.response.status_code, reason: e.response.reason_phrase };
			note('registered', e.response.status_code + ' ' + e.response.reason_phrase);
			if (!session) {
				call();
			}
		});
		ua.on('registrationFailed', function (e) {
			const r = e.response;
			report.register = { cause: e.cause, status: r && r.status_code, reason: r && r.reason_phrase };
			note('registrationFailed', report.register);
			finish('registration failed: ' + e.cause + (r ? ' (' + r.status_code + ' ' + r.reason_phrase + ')' : ''));
		});
		note('starting', { wss: cfg.wss, uri: 'sip:' + cfg.user + '@' + cfg.domain });
		ua.start();
	} catch (err) {
		report.errors.push('JsSIP: ' + err);
		finish('JsSIP threw: ' + err);
	}
})();
