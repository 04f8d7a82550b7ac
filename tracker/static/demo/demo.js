/*
 * Acme Outdoor demo store: a small client-side app for / and /app/..., plus the shared bits of
 * /long and /form (cart badge, privacy toggle, reading progress, the join form). It exists to
 * give the tracker something realistic to watch: pushState navigation, buttons, SVG, forms.
 * Everything is built with DOM calls; no HTML strings.
 */
(function () {
  'use strict';

  var PRODUCTS = [
    { id: 'summit-tent', name: 'Summit 2P Tent', price: 349, category: 'Tents', art: 'tent',
      blurb: 'Two-person, three-season, 1.4 kg. Pitches in three minutes, stands up to ridge wind.' },
    { id: 'ridge-pack', name: 'Ridge 38L Pack', price: 189, category: 'Packs', art: 'pack',
      blurb: 'A frameless pack that carries ten kilograms like five. Roll top, hip-belt pockets.' },
    { id: 'ember-jacket', name: 'Ember Down Jacket', price: 259, category: 'Clothing', art: 'jacket',
      blurb: '800-fill responsibly sourced down in a jacket that packs into its own pocket.' },
    { id: 'trek-poles', name: 'Carbon Trek Poles', price: 129, category: 'Gear', art: 'poles',
      blurb: 'Three-section carbon poles, 280 g a pair, cork grips that stay dry.' },
    { id: 'flare-stove', name: 'Flare Canister Stove', price: 69, category: 'Gear', art: 'stove',
      blurb: 'Boils a litre in three minutes and folds to the size of an egg.' },
    { id: 'lumen-headlamp', name: 'Lumen 400 Headlamp', price: 49, category: 'Gear', art: 'lamp',
      blurb: '400 lumens, red night mode, USB-C charging, 40 hours on low.' },
    { id: 'drift-bag', name: 'Drift -5° Sleeping Bag', price: 299, category: 'Tents', art: 'bag',
      blurb: 'A mummy bag rated to -5 °C comfort that weighs less than a kilogram.' },
    { id: 'canyon-pack', name: 'Canyon 24L Daypack', price: 99, category: 'Packs', art: 'pack',
      blurb: 'The pack for summit days: hydration sleeve, rain cover, ventilated back.' }
  ];
  var CATEGORIES = ['All', 'Tents', 'Packs', 'Clothing', 'Gear'];
  var STORIES = [
    { title: 'Three passes in a storm', date: 'September 2024', tag: 'Trip report',
      text: 'We set out for a four-day loop and came back with a new respect for weather windows.',
      more: 'On day two the forecast turned. We sat out the worst of it below the second pass, ' +
        'ate everything with sugar in it, and crossed at first light with frost on the tents.' },
    { title: 'How we repair a tent pole in the field', date: 'August 2024', tag: 'Skills',
      text: 'A splint, some tape and five minutes will get you home.',
      more: 'Every Acme tent ships with a pole splint. Slide it over the break, tape both ends, ' +
        'and re-tension the fly. We will replace the pole for free once you are home.' },
    { title: 'The lightest kitchen that still makes coffee', date: 'July 2024', tag: 'Gear',
      text: 'Stove, pot, spoon and a filter: our kitchen for ten days weighs 410 grams.',
      more: 'The trick is one pot that does everything and food that only needs boiling water.' },
    { title: 'Walking the crest with kids', date: 'June 2024', tag: 'Family',
      text: 'Shorter days, more snacks and the best campsites we have ever had.',
      more: 'Plan for half the distance you would walk alone, and let them carry the map.' }
  ];
  var CART_KEY = 'acme_cart';
  var SVG_NS = 'http://www.w3.org/2000/svg';

  // ------------------------------------------------------------------ the hero's A/B test

  // The experiment "hero-button" (defined by the server in a fresh store) tries a bolder label
  // on the hero's button against visits to the shop. Without tracker.variant (an older
  // tracker.js, or tracking declined) the button keeps its label.
  var HERO_LABELS = { bold: 'Gear up for the season →' };

  function heroExperiment(button) {
    var t = window.tracker;
    if (!t || typeof t.variant !== 'function') return button;
    Promise.resolve().then(function () { return t.variant('hero-button'); }).then(function (variant) {
      if (Object.prototype.hasOwnProperty.call(HERO_LABELS, variant)) button.textContent = HERO_LABELS[variant];
      button.setAttribute('data-variant', variant);
    }).catch(function () { /* the control label stays */ });
    return button;
  }

  // ------------------------------------------------------------------ DOM helpers

  function h(tag, props, children) {
    var el = document.createElement(tag);
    Object.keys(props || {}).forEach(function (key) {
      var value = props[key];
      if (value === null || value === undefined || value === false) return;
      if (key === 'text') el.textContent = value;
      else if (key === 'on') Object.keys(value).forEach(function (ev) { el.addEventListener(ev, value[ev]); });
      else el.setAttribute(key, value === true ? '' : value);
    });
    (children || []).forEach(function (child) {
      if (child) el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
    return el;
  }

  function s(tag, attrs, children) {
    var el = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) { el.setAttribute(key, attrs[key]); });
    (children || []).forEach(function (child) { el.appendChild(child); });
    return el;
  }

  function money(n) {
    return '$' + n.toFixed(0);
  }

  // Product illustrations: a few shapes per kind, colours from the stylesheet.
  function art(kind, extraClass) {
    var shapes = {
      tent: [s('path', { class: 'art-main', d: 'M20 95 L60 30 L100 95 Z' }),
        s('path', { class: 'art-dark', d: 'M52 95 L60 62 L68 95 Z' }),
        s('line', { class: 'art-line', x1: 10, y1: 95, x2: 110, y2: 95 })],
      pack: [s('rect', { class: 'art-main', x: 36, y: 28, width: 48, height: 66, rx: 12 }),
        s('rect', { class: 'art-dark', x: 44, y: 58, width: 32, height: 22, rx: 5 }),
        s('path', { class: 'art-line', d: 'M46 28 Q60 12 74 28' })],
      jacket: [s('path', { class: 'art-main', d: 'M40 30 L52 24 L60 32 L68 24 L80 30 L96 70 L84 74 L80 58 L80 96 L40 96 L40 58 L36 74 L24 70 Z' }),
        s('line', { class: 'art-line', x1: 60, y1: 34, x2: 60, y2: 96 }),
        s('line', { class: 'art-line', x1: 40, y1: 60, x2: 80, y2: 60 }),
        s('line', { class: 'art-line', x1: 40, y1: 78, x2: 80, y2: 78 })],
      poles: [s('line', { class: 'art-pole', x1: 44, y1: 22, x2: 52, y2: 98 }),
        s('line', { class: 'art-pole', x1: 76, y1: 22, x2: 68, y2: 98 }),
        s('rect', { class: 'art-dark', x: 39, y: 18, width: 10, height: 20, rx: 4 }),
        s('rect', { class: 'art-dark', x: 71, y: 18, width: 10, height: 20, rx: 4 })],
      stove: [s('rect', { class: 'art-main', x: 42, y: 64, width: 36, height: 30, rx: 8 }),
        s('rect', { class: 'art-dark', x: 36, y: 56, width: 48, height: 8, rx: 3 }),
        s('path', { class: 'art-flame', d: 'M60 22 C72 36 70 48 60 52 C50 48 48 36 60 22 Z' })],
      lamp: [s('path', { class: 'art-beam', d: 'M66 50 L112 30 L112 80 Z' }),
        s('circle', { class: 'art-main', cx: 56, cy: 55, r: 16 }),
        s('circle', { class: 'art-dark', cx: 56, cy: 55, r: 7 }),
        s('path', { class: 'art-line', d: 'M20 55 Q56 10 92 55' })],
      bag: [s('path', { class: 'art-main', d: 'M40 30 Q60 12 80 30 L86 94 Q60 104 34 94 Z' }),
        s('ellipse', { class: 'art-dark', cx: 60, cy: 36, rx: 12, ry: 9 }),
        s('line', { class: 'art-line', x1: 38, y1: 60, x2: 82, y2: 60 }),
        s('line', { class: 'art-line', x1: 36, y1: 78, x2: 84, y2: 78 })]
    };
    return s('svg', { class: 'product-art ' + (extraClass || '') + ' art-' + kind, viewBox: '0 0 120 110',
      role: 'img', 'aria-hidden': 'true' }, [s('rect', { class: 'art-bg', width: 120, height: 110, rx: 10 })]
      .concat(shapes[kind] || shapes.pack));
  }

  // ------------------------------------------------------------------ cart

  function readCart() {
    try {
      var cart = JSON.parse(sessionStorage.getItem(CART_KEY) || '{}');
      return cart && typeof cart === 'object' ? cart : {};
    } catch (e) {
      return {};
    }
  }

  function writeCart(cart) {
    try { sessionStorage.setItem(CART_KEY, JSON.stringify(cart)); } catch (e) { /* private mode */ }
    updateCartBadge();
  }

  function addToCart(id) {
    var cart = readCart();
    cart[id] = (cart[id] || 0) + 1;
    writeCart(cart);
    toast('Added to your cart');
  }

  function updateCartBadge() {
    var badge = document.getElementById('cart-count');
    if (!badge) return;
    var cart = readCart();
    badge.textContent = String(Object.keys(cart).reduce(function (n, id) { return n + cart[id]; }, 0));
  }

  var toastTimer = null;
  function toast(message) {
    var el = document.getElementById('toast');
    if (!el) {
      el = h('div', { id: 'toast', class: 'toast', role: 'status' });
      document.body.appendChild(el);
    }
    el.textContent = message;
    el.classList.add('visible');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.classList.remove('visible'); }, 1800);
  }

  // ------------------------------------------------------------------ views

  function productCard(product) {
    return h('article', { class: 'card product-card', 'data-product': product.id }, [
      h('a', { class: 'product-link', href: '/app/product/' + product.id, 'data-spa': true }, [
        art(product.art),
        h('h3', { text: product.name })
      ]),
      h('p', { class: 'muted', text: product.category }),
      h('div', { class: 'product-row' }, [
        h('span', { class: 'price', text: money(product.price) }),
        h('button', { class: 'button primary small add-to-cart', type: 'button',
          'data-id': product.id, text: 'Add to cart' })
      ])
    ]);
  }

  function homeView() {
    var hero = h('section', { class: 'hero' }, [
      h('div', { class: 'hero-text' }, [
        h('p', { class: 'eyebrow', text: 'New season collection' }),
        h('h1', { text: 'Gear for the long way round.' }),
        h('p', { class: 'lede', text: 'Light, tough kit designed on the trail and repaired for free, for life.' }),
        h('div', { class: 'actions' }, [
          heroExperiment(h('a', { id: 'hero-shop', class: 'button primary', href: '/app/shop', 'data-spa': true, text: 'Shop the collection' })),
          h('a', { id: 'hero-guide', class: 'button secondary', href: '/long', text: 'Read the field guide' })
        ])
      ]),
      s('svg', { class: 'hero-art', viewBox: '0 0 480 300', role: 'img', 'aria-label': 'Mountains at sunrise' }, [
        s('rect', { class: 'sky', width: 480, height: 300, rx: 18 }),
        s('circle', { class: 'sun', cx: 350, cy: 95, r: 38 }),
        s('path', { class: 'range far', d: 'M0 220 L90 120 L160 180 L250 80 L340 190 L410 130 L480 190 V300 H0 Z' }),
        s('path', { class: 'range near', d: 'M0 260 L110 170 L200 240 L300 160 L400 250 L480 210 V300 H0 Z' }),
        s('path', { class: 'trail', d: 'M40 300 C120 260 170 270 230 240 S330 220 380 200' })
      ])
    ]);
    var featured = h('section', { class: 'section' }, [
      h('div', { class: 'section-head' }, [
        h('h2', { text: 'Trail favourites' }),
        h('a', { href: '/app/shop', 'data-spa': true, text: 'See everything →' })
      ]),
      h('div', { class: 'grid products' }, PRODUCTS.slice(0, 4).map(productCard))
    ]);
    var promises = h('section', { class: 'section promises' }, [
      promise('Free repairs for life', 'Send it back, we fix it. Whatever happened on the trail.'),
      promise('Tested on 12,000 km', 'Every product spends a season on our staff before you see it.'),
      promise('Carbon-neutral shipping', 'Delivered in recycled packaging, offset at the source.')
    ]);
    return [hero, featured, promises];
  }

  function promise(title, text) {
    return h('div', { class: 'card promise' }, [h('h3', { text: title }), h('p', { class: 'muted', text: text })]);
  }

  var shopFilter = 'All';

  function shopView() {
    var grid = h('div', { class: 'grid products', id: 'product-grid' });
    function fill() {
      grid.textContent = '';
      PRODUCTS.filter(function (p) { return shopFilter === 'All' || p.category === shopFilter; })
        .forEach(function (p) { grid.appendChild(productCard(p)); });
    }
    var chips = h('div', { class: 'chips', role: 'toolbar', 'aria-label': 'Filter by category' },
      CATEGORIES.map(function (category) {
        return h('button', {
          class: 'chip' + (category === shopFilter ? ' active' : ''), type: 'button', text: category,
          'data-category': category,
          on: { click: function (e) {
            shopFilter = category;
            chips.querySelectorAll('.chip').forEach(function (c) { c.classList.toggle('active', c === e.currentTarget); });
            fill();
          } }
        });
      }));
    fill();
    return [h('div', { class: 'page-head' }, [h('h1', { text: 'Shop' }),
      h('p', { class: 'muted', text: 'Everything we make, tested on the trail before it reaches you.' })]), chips, grid];
  }

  function productView(id) {
    var product = PRODUCTS.filter(function (p) { return p.id === id; })[0];
    if (!product) return notFoundView();
    return [h('div', { class: 'product-detail' }, [
      art(product.art, 'large'),
      h('div', { class: 'product-info' }, [
        h('a', { class: 'back-link', href: '/app/shop', 'data-spa': true, text: '← Back to the shop' }),
        h('p', { class: 'eyebrow', text: product.category }),
        h('h1', { text: product.name }),
        h('p', { class: 'price large', text: money(product.price) }),
        h('p', { class: 'lede', text: product.blurb }),
        h('div', { class: 'actions' }, [
          h('button', { id: 'add-to-cart', class: 'button primary add-to-cart', type: 'button', 'data-id': product.id, text: 'Add to cart' }),
          h('a', { class: 'button secondary', href: '/app/cart', 'data-spa': true, text: 'View cart' })
        ]),
        h('details', { class: 'specs' }, [
          h('summary', { text: 'Specifications and care' }),
          h('p', { class: 'muted', text: 'Machine-washable at 30 °C where fabric allows. Free repairs for life: send it back and we fix it.' })
        ])
      ])
    ])];
  }

  function cartView() {
    var cart = readCart();
    var ids = Object.keys(cart).filter(function (id) { return cart[id] > 0; });
    var head = h('div', { class: 'page-head' }, [h('h1', { text: 'Your cart' })]);
    if (!ids.length) {
      return [head, h('div', { class: 'card empty' }, [
        h('p', { text: 'Your cart is empty. The trail is not.' }),
        h('a', { class: 'button primary', href: '/app/shop', 'data-spa': true, text: 'Find some gear' })
      ])];
    }
    var total = 0;
    var rows = ids.map(function (id) {
      var product = PRODUCTS.filter(function (p) { return p.id === id; })[0];
      if (!product) return null;
      total += product.price * cart[id];
      return h('li', { class: 'cart-row' }, [
        art(product.art, 'small'),
        h('span', { class: 'cart-name', text: product.name + ' × ' + cart[id] }),
        h('span', { class: 'price', text: money(product.price * cart[id]) }),
        h('button', { class: 'button ghost small remove', type: 'button', text: 'Remove',
          on: { click: function () { var c = readCart(); delete c[id]; writeCart(c); render(); } } })
      ]);
    });
    return [head, h('ul', { class: 'card cart-list' }, rows), h('div', { class: 'cart-total' }, [
      h('span', { text: 'Total ' }), h('strong', { text: money(total) }),
      h('a', { id: 'checkout', class: 'button primary', href: '/form', text: 'Checkout as a member' })
    ])];
  }

  function journalView() {
    return [h('div', { class: 'page-head' }, [h('h1', { text: 'Trail journal' }),
      h('p', { class: 'muted', text: 'Stories, skills and trip reports from the Acme crew.' })]),
    h('div', { class: 'grid stories' }, STORIES.map(function (story, i) {
      return h('article', { class: 'card story' }, [
        h('p', { class: 'eyebrow', text: story.tag + ' · ' + story.date }),
        h('h3', { text: story.title }),
        h('p', { text: story.text }),
        h('details', { class: 'story-more', id: 'story-' + (i + 1) }, [
          h('summary', { text: 'Read more' }), h('p', { class: 'muted', text: story.more })
        ])
      ]);
    }))];
  }

  function aboutView() {
    return [h('div', { class: 'page-head' }, [h('h1', { text: 'About Acme Outdoor' })]),
      h('div', { class: 'about card' }, [
        h('p', { class: 'lede', text: 'We started in a garage in 2009 with one tent and a sewing machine.' }),
        h('p', { text: 'Fifteen years later we are forty people who still test everything ourselves, ' +
          'repair everything we sell, and close the shop on the first sunny Friday of spring.' }),
        h('div', { class: 'actions' }, [
          h('a', { class: 'button primary', href: '/form', text: 'Join the club' }),
          h('a', { class: 'button secondary', href: '/app/journal', 'data-spa': true, text: 'Read the journal' }),
          h('button', { id: 'contact-button', class: 'button ghost', type: 'button', text: 'Contact us',
            on: { click: function () { toast('Write to hello@acme-outdoor.example'); } } })
        ])
      ])];
  }

  function notFoundView() {
    return [h('div', { class: 'card empty' }, [
      h('h1', { text: 'Off the map' }),
      h('p', { class: 'muted', text: 'We could not find that page.' }),
      h('a', { class: 'button primary', href: '/', 'data-spa': true, text: 'Back to base camp' })
    ])];
  }

  function route(path) {
    var product = /^\/app\/product\/([\w-]+)\/?$/.exec(path);
    if (path === '/' || path === '/app' || path === '/app/') return { title: 'Gear for the long way round', view: homeView };
    if (path === '/app/shop') return { title: 'Shop', view: shopView };
    if (product) {
      var found = PRODUCTS.filter(function (p) { return p.id === product[1]; })[0];
      return { title: found ? found.name : 'Not found', view: function () { return productView(product[1]); } };
    }
    if (path === '/app/cart') return { title: 'Cart', view: cartView };
    if (path === '/app/journal') return { title: 'Trail journal', view: journalView };
    if (path === '/app/about') return { title: 'About', view: aboutView };
    return { title: 'Not found', view: notFoundView };
  }

  function render() {
    var main = document.getElementById('view');
    if (!main) return;
    var path = window.location.pathname;
    var match = route(path);
    main.textContent = '';
    match.view().forEach(function (node) { main.appendChild(node); });
    document.title = match.title + ' · Acme Outdoor';
    document.querySelectorAll('.main-nav a').forEach(function (a) {
      var href = a.getAttribute('href');
      var active = href === path || (href === '/app/shop' && path.indexOf('/app/product/') === 0);
      a.classList.toggle('active', active);
      if (active) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    });
  }

  function navigate(href) {
    if (href !== window.location.pathname) history.pushState({}, '', href);
    render();
    window.scrollTo(0, 0);
  }

  // ------------------------------------------------------------------ wiring

  function onDocumentClick(e) {
    var add = e.target.closest('.add-to-cart');
    if (add) {
      addToCart(add.getAttribute('data-id'));
      return;
    }
    var link = e.target.closest('a[data-spa]');
    // Only the app shell (index.html, with #view) navigates client-side.
    if (!link || !document.getElementById('view') || e.defaultPrevented || e.button !== 0 ||
        e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(link.getAttribute('href'));
  }

  function wireSearch() {
    var button = document.getElementById('search-button');
    var row = document.getElementById('search-row');
    var input = document.getElementById('search-input');
    if (!button || !row || !input) return;
    button.addEventListener('click', function () {
      row.hidden = !row.hidden;
      if (!row.hidden) input.focus();
    });
    input.addEventListener('keydown', function (e) {
      if (e.key !== 'Enter') return;
      var query = input.value.trim().toLowerCase();
      var hit = PRODUCTS.filter(function (p) { return p.name.toLowerCase().indexOf(query) >= 0; })[0];
      navigate(hit ? '/app/product/' + hit.id : '/app/shop');
      row.hidden = true;
    });
  }

  function wirePrivacy() {
    var status = document.getElementById('privacy-status');
    var toggle = document.getElementById('privacy-toggle');
    if (!status || !toggle) return;
    function show() {
      var tracker = window.tracker;
      var on = !!(tracker && tracker.isEnabled());
      var signal = navigator.doNotTrack === '1' || navigator.globalPrivacyControl === true;
      status.textContent = on ? 'Analytics: on' : signal ? 'Analytics: off (your browser asks not to be tracked)' : 'Analytics: off';
      toggle.textContent = on ? 'Opt out' : 'Opt in';
      toggle.hidden = !tracker || (!on && signal);
    }
    toggle.addEventListener('click', function () {
      var tracker = window.tracker;
      if (!tracker) return;
      if (tracker.isEnabled()) tracker.optOut(); else tracker.optIn();
      show();
    });
    show();
  }

  function wireJoinForm() {
    var form = document.getElementById('join-form');
    if (!form) return;
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var status = document.getElementById('form-status');
      if (!form.checkValidity()) {
        status.textContent = 'Please fill in your name, a valid email and a password of 8+ characters.';
        status.className = 'form-status error';
        return;
      }
      form.reset();
      status.textContent = 'Welcome to the club! Check your inbox for a confirmation.';
      status.className = 'form-status ok';
    });
  }

  function wireReading() {
    var bar = document.getElementById('reading-bar');
    var top = document.getElementById('back-to-top');
    if (top) top.addEventListener('click', function () { window.scrollTo({ top: 0, behavior: 'smooth' }); });
    if (!bar) return;
    function update() {
      var max = document.documentElement.scrollHeight - window.innerHeight;
      bar.style.transform = 'scaleX(' + (max > 0 ? Math.min(1, window.scrollY / max) : 1) + ')';
    }
    window.addEventListener('scroll', update, { passive: true });
    update();
  }

  document.addEventListener('click', onDocumentClick);
  window.addEventListener('popstate', render);
  render();
  updateCartBadge();
  wireSearch();
  wireJoinForm();
  wireReading();
  // tracker.js is deferred after this script: by DOMContentLoaded it has run.
  document.addEventListener('DOMContentLoaded', wirePrivacy);
})();
