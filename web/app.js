/*
 * ragq's chat page (web/index.html): POST chat, then the answer as it is
 * written from GET job-stream (EventSource), then the final answer and its
 * sources from the stream's `done` event (the /job-status JSON).  Stop sends
 * POST job-cancel.  Without a job-stream location (the EventSource cannot
 * open), the page falls back to long-polling job-status?wait=.
 *
 * Server text only ever reaches the page through textContent / text nodes.
 * The page's state is mirrored on <body> (data-phase: idle, sending,
 * streaming, done; data-status: the job's last status; data-job; data-tokens:
 * token events received) for people reading the DOM and for the browser test
 * (tests/web/).
 */
'use strict';

(function () {
    var FINAL = { finished: true, failed: true, canceled: true };
    var body = document.body;
    var form = document.getElementById('ask-form');
    var question = document.getElementById('question');
    var askButton = document.getElementById('ask');
    var stopButton = document.getElementById('stop');
    var statusEl = document.getElementById('status');
    var errorEl = document.getElementById('error');
    var answerBox = document.getElementById('answer-box');
    var answerEl = document.getElementById('answer');
    var jobEl = document.getElementById('job');
    var sourcesBox = document.getElementById('sources-box');
    var sourcesEl = document.getElementById('sources');

    var current = null; /* {id, es, text, tokens, done} of the shown job */

    /*
     * Where the API is: ?api= in the page's address (same origin only, so a
     * link cannot send the questions elsewhere), else data-api on <body>,
     * else the page's own directory.  Always ends with "/".
     */
    function apiBase() {
        var given = new URLSearchParams(window.location.search).get('api');
        var base;

        if (given) {
            base = new URL(given, window.location.href);
            if (base.origin !== window.location.origin) {
                base = null;
            }
        }
        if (!base) {
            base = new URL(body.dataset.api || '.', window.location.href);
        }
        base.search = '';
        base.hash = '';
        if (base.pathname.charAt(base.pathname.length - 1) !== '/') {
            base.pathname += '/';
        }
        return base;
    }

    function endpoint(name, params) {
        var url = new URL(name, apiBase());
        Object.keys(params || {}).forEach(function (k) {
            url.searchParams.set(k, params[k]);
        });
        return url.href;
    }

    function setPhase(phase) {
        body.dataset.phase = phase;
        askButton.disabled = phase === 'sending' || phase === 'streaming';
        stopButton.disabled = phase !== 'streaming';
    }

    function setStatus(status, note) {
        body.dataset.status = status;
        statusEl.textContent = note ? status + ' (' + note + ')' : status;
    }

    function showError(text) {
        errorEl.textContent = text;
        errorEl.hidden = !text;
    }

    /* "code: message" of a {"error":{...}} body, else the HTTP status */
    function errorText(json, response) {
        if (json && json.error && typeof json.error === 'object') {
            var code = String(json.error.code || 'error');
            return json.error.message ? code + ': ' + json.error.message : code;
        }
        if (response) {
            return 'HTTP ' + response.status + ' ' + response.statusText;
        }
        return 'no answer from the server';
    }

    function readJson(response) {
        return response.text().then(function (text) {
            try {
                return JSON.parse(text);
            } catch (e) {
                return null;
            }
        });
    }

    /* The answer, its [N] citations made links to the sources below. */
    function renderAnswer(text) {
        var re = /\[(\d+)\]/g, last = 0, m, a;

        answerEl.textContent = '';
        while ((m = re.exec(text)) !== null) {
            answerEl.appendChild(document.createTextNode(text.slice(last, m.index)));
            a = document.createElement('a');
            a.className = 'cite';
            a.href = '#source-' + m[1];
            a.textContent = m[0];
            answerEl.appendChild(a);
            last = re.lastIndex;
        }
        answerEl.appendChild(document.createTextNode(text.slice(last)));
        answerBox.hidden = false;
    }

    function citedNumbers(text) {
        var cited = {}, re = /\[(\d+)\]/g, m;

        while ((m = re.exec(text || '')) !== null) {
            cited[m[1]] = true;
        }
        return cited;
    }

    function renderSources(sources, answer) {
        var cited = citedNumbers(answer);

        sourcesEl.textContent = '';
        if (!Array.isArray(sources) || sources.length === 0) {
            sourcesBox.hidden = true;
            return;
        }
        sources.forEach(function (s, i) {
            var li = document.createElement('li');
            var head = document.createElement('div');
            var name = document.createElement('span');
            var excerpt = document.createElement('p');
            var n = String(i + 1);

            li.id = 'source-' + n;
            if (cited[n]) {
                li.className = 'cited';
            }
            head.className = 'source-head';
            name.className = 'source-name';
            name.textContent = (s && (s.source || s.id)) || 'source ' + n;
            head.appendChild(name);
            if (s && typeof s.score === 'number') {
                var score = document.createElement('span');
                score.className = 'score';
                score.textContent = 'score ' + s.score.toFixed(3);
                head.appendChild(score);
            }
            excerpt.className = 'excerpt';
            excerpt.textContent = (s && s.text) || '';
            li.appendChild(head);
            li.appendChild(excerpt);
            sourcesEl.appendChild(li);
        });
        sourcesBox.hidden = false;
    }

    /* The job ended: what /job-status says replaces what was streamed. */
    function finish(job, state) {
        if (state !== current || state.done) {
            return;
        }
        state.done = true;
        if (state.es) {
            state.es.close();
        }
        if (typeof job.result === 'string') {
            state.text = job.result;
        }
        if (state.text) {
            renderAnswer(state.text);
        }
        answerEl.classList.toggle('partial', job.status !== 'finished');
        renderSources(job.status === 'finished' ? job.sources : null, state.text);
        setStatus(String(job.status || 'unknown'));
        if (job.status === 'canceled') {
            showError('');
        } else if (job.status !== 'finished' || job.error) {
            showError(errorText(job, null));
        }
        setPhase('done');
    }

    function fail(state, text) {
        if (state !== current || state.done) {
            return;
        }
        state.done = true;
        if (state.es) {
            state.es.close();
        }
        showError(text);
        setStatus('error');
        setPhase('done');
    }

    /* No stream (no job-stream location, or it refused): long-poll status. */
    function poll(state) {
        if (state !== current || state.done) {
            return;
        }
        fetch(endpoint('job-status', { job_id: state.id, wait: 30 }),
              { headers: { Accept: 'application/json' } })
            .then(function (response) {
                return readJson(response).then(function (json) {
                    if (!response.ok || !json) {
                        fail(state, errorText(json, response));
                    } else if (FINAL[json.status]) {
                        finish(json, state);
                    } else {
                        setStatus(String(json.status), 'no stream, polling');
                        poll(state);
                    }
                });
            })
            .catch(function (e) {
                fail(state, 'job-status: ' + e.message);
            });
    }

    function listen(state) {
        var es = new EventSource(endpoint('job-stream', { job_id: state.id }));

        state.es = es;
        es.addEventListener('status', function (ev) {
            var d = JSON.parse(ev.data);
            if (state === current && !state.done && d && d.status) {
                setStatus(String(d.status));
            }
        });
        es.addEventListener('token', function (ev) {
            var d = JSON.parse(ev.data);
            if (state !== current || state.done || !d) {
                return;
            }
            state.text += String(d.text || '');
            state.tokens++;
            body.dataset.tokens = String(state.tokens);
            if (body.dataset.status !== 'started') {
                setStatus('started');
            }
            renderAnswer(state.text);
        });
        es.addEventListener('reset', function () {
            /* the worker restarted the answer: what was shown is void */
            if (state === current && !state.done) {
                state.text = '';
                renderAnswer('');
            }
        });
        es.addEventListener('done', function (ev) {
            finish(JSON.parse(ev.data), state);
        });
        es.onerror = function () {
            if (state !== current || state.done) {
                es.close();
                return;
            }
            if (es.readyState === EventSource.CLOSED) {
                /* refused before any event (or never opened): no stream */
                state.es = null;
                poll(state);
            } else {
                /* the browser reconnects with Last-Event-ID by itself */
                setStatus(body.dataset.status || 'started', 'reconnecting');
            }
        };
    }

    function ask(event) {
        var query = question.value.trim();
        var state;

        event.preventDefault();
        if (!query || body.dataset.phase === 'sending' || body.dataset.phase === 'streaming') {
            return;
        }
        if (current && current.es) {
            current.es.close();
        }
        state = { id: null, es: null, text: '', tokens: 0, done: false };
        current = state;
        body.dataset.tokens = '0';
        delete body.dataset.job;
        showError('');
        answerEl.textContent = '';
        answerEl.classList.remove('partial');
        answerBox.hidden = true;
        jobEl.textContent = '';
        renderSources(null, '');
        setPhase('sending');
        setStatus('sending');

        fetch(endpoint('chat'), {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
            body: JSON.stringify({ query: query })
        })
            .then(function (response) {
                return readJson(response).then(function (json) {
                    if (response.status !== 202 || !json || !json.job_id) {
                        fail(state, errorText(json, response));
                        return;
                    }
                    state.id = String(json.job_id);
                    body.dataset.job = state.id;
                    jobEl.textContent = 'job ' + state.id;
                    setStatus(String(json.status || 'queued'));
                    setPhase('streaming');
                    listen(state);
                });
            })
            .catch(function (e) {
                fail(state, 'chat: ' + e.message);
            });
    }

    function stop() {
        var state = current;
        var was = body.dataset.status || 'started';

        if (!state || state.done || !state.id) {
            return;
        }
        stopButton.disabled = true;
        setStatus(was, 'canceling');
        fetch(endpoint('job-cancel', { job_id: state.id }), {
            method: 'POST',
            headers: { Accept: 'application/json' }
        })
            .then(function (response) {
                return readJson(response).then(function (json) {
                    if (response.ok && json) {
                        finish(json, state);
                    } else if (response.status === 409) {
                        /* already final: the stream's done says how it ended */
                        setStatus(was, 'already ended');
                    } else if (state === current && !state.done) {
                        showError('Stop: ' + errorText(json, response));
                        stopButton.disabled = false;
                    }
                });
            })
            .catch(function (e) {
                showError('Stop: ' + e.message);
                stopButton.disabled = false;
            });
    }

    form.addEventListener('submit', ask);
    stopButton.addEventListener('click', stop);
    question.addEventListener('keydown', function (e) {
        /* Enter asks, Shift+Enter is a new line */
        if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            form.requestSubmit ? form.requestSubmit() : ask(e);
            e.preventDefault();
        }
    });
    setPhase('idle');
})();
