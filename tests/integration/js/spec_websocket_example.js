const ws = new WebSocket('ws://localhost:8000/api/v1/market/ws/market-data');

// Subscribe to market data
ws.send(JSON.stringify({
  type: 'subscribe',
  data: {
    type: 'market_data',
    channels: ['indices', 'sentiment']
  }
}));

// Subscribe to stock quotes
ws.send(JSON.stringify({
  type: 'subscribe',
  data: {
    type: 'stock_quotes',
    symbols: ['AAPL', 'MSFT', 'GOOGL']
  }
}));

// Handle incoming messages
ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  console.log('Received:', message);
};
